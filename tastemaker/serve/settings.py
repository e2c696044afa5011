"""Service settings: typed, from a TOML file and/or ``TASTEMAKER_*`` environment variables.

Precedence: environment > TOML file > defaults. Nested values in the environment are JSON,
e.g. ``TASTEMAKER_API_KEYS='[{"name": "app", "sha256": "...", "scopes": ["read"]}]'``.

API keys are given as SHA-256 hashes of the secret (``tastemaker serve --hash-key SECRET``
prints one), never in clear. With no keys configured the service runs open (every request
has every scope) and says so in its log: fine on a laptop, never in production.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tastemaker.protocols import EXPOSURE_TYPES

Scope = Literal["read", "write", "admin"]


class ApiKey(BaseModel):
    """One client: the SHA-256 of its secret, its scopes and its request budget."""

    model_config = ConfigDict(extra="forbid")
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = ["read"]
    rate_per_second: float = Field(100.0, gt=0)  # sustained rate; bursts up to `burst`
    burst: int = Field(200, ge=1)


class Variant(BaseModel):
    """An A/B variant: a share of users and the model version (or "active") that serves them."""

    model_config = ConfigDict(extra="forbid")
    name: str
    weight: float = Field(gt=0)
    model_version: str = "active"


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    variants: list[Variant] = Field(min_length=2)


class TrainingSettings(BaseModel):
    """What background retraining fits, on which events, how often, and the quality gate a new
    model must pass before it is activated.

    * What: the pipeline file ``pipeline`` (a path, or a shipped name such as ``"default"``),
      or else a one-source pipeline over the model ``model`` with ``params``.

    * ``event_types``: the event types that train (e.g. ``["click", "purchase"]``); ``None``
      (the default) means every type except the exposure types (``impression``), which
      record what was shown and are never training positives (listing one is an error).
    * The gate, on a leave-one-out holdout of the store's events: holdout NDCG@10 must be
      at least ``min_ndcg10`` and, with ``beat_popularity`` (the default), at least that of
      the most-popular baseline fitted on the same split. A model that fails is saved
      nowhere and not activated; the response, ``/v1/admin/training`` and the log say why.
    """

    model_config = ConfigDict(extra="forbid")
    pipeline: str | None = None  # a pipeline TOML file, or a shipped one by name ("default"); else:
    model: str = "ease"  # ... a one-source pipeline over this model
    params: dict[str, Any] = {}
    event_types: list[str] | None = None
    interval_seconds: float = Field(0.0, ge=0)  # 0 = only on demand
    min_ndcg10: float = Field(0.0, ge=0)  # on a leave-one-out holdout of the store's events
    beat_popularity: bool = True
    threads: int | None = 1

    @field_validator("event_types")
    @classmethod
    def _no_exposure(cls, value: list[str] | None) -> list[str] | None:
        shown = sorted(set(value or ()) & set(EXPOSURE_TYPES))
        if shown:
            raise ValueError(f"{', '.join(shown)} records what was shown, not what a user did: it never trains")
        return value


class Settings(BaseModel):
    """Everything ``tastemaker serve`` reads."""

    model_config = ConfigDict(extra="forbid")
    store_url: str = "sqlite:///tastemaker.db"
    models_dir: Path = Path("models")
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[ApiKey] = []
    max_request_bytes: int = Field(1_000_000, ge=1024)  # counted as the body streams in: 413 past it
    max_items_per_request: int = Field(10_000, ge=1)
    max_n: int = Field(1000, ge=1)
    # Failed authentication (no key, or an unknown one) per client address: `auth_failure_burst`
    # failures, refilled at `auth_failures_per_second`; past that, 429 with Retry-After.
    auth_failures_per_second: float = Field(1.0, gt=0)
    auth_failure_burst: int = Field(20, ge=1)
    # A request reads the user's most recent `history_limit` distinct items (exposure events
    # never count, and repeats of one item take one place): they are excluded as seen, and
    # those newer than the model's snapshot are folded in on top of its training history.
    history_limit: int = Field(500, ge=1)
    ann_exact_below: int = Field(20_000, ge=0)
    threads: int = Field(1, ge=1)  # BLAS/OpenMP threads per process: 1 keeps single requests fast
    # Python's GIL switch interval in the server process (ms). A request thread that comes back
    # from SQLite, FAISS or LightGBM (all release the GIL) waits up to this long behind another
    # request's Python code; Python's 5 ms default put ~2 ms on p99 at 2 connections
    # (benchmarks/serving.py --pipeline).
    gil_switch_interval_ms: float = Field(1.0, gt=0, le=100)
    # How many requests run the pipeline at once (the store is read outside this limit). Its
    # Python code holds the GIL, so two requests scoring together take turns anyway and the
    # switching costs: at 2 connections 1 gave 248 req/s against 232. Raise it for models
    # whose scoring is mostly in BLAS calls (which release the GIL) with `threads` > 1 cores.
    scoring_concurrency: int = Field(1, ge=1, le=1024)
    # A bandit explorer's reward per event type (an event on an item it showed the user).
    online_rewards: dict[str, float] = {"click": 1.0, "conversion": 1.0}
    training: TrainingSettings = TrainingSettings()
    experiments: list[Experiment] = []

    @classmethod
    def load(cls, path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
        """Defaults, then the TOML file, then ``TASTEMAKER_<FIELD>`` environment variables."""
        data: dict[str, Any] = {}
        if path is not None:
            data.update(tomllib.loads(Path(path).read_text()))
        env = dict(os.environ if env is None else env)
        for name, field in cls.model_fields.items():
            raw = env.get(f"TASTEMAKER_{name.upper()}")
            if raw is None:
                continue
            simple = field.annotation in (str, int, float, Path)
            data[name] = raw if simple else json.loads(raw)
        return cls.model_validate(data)


def hash_secret(secret: str) -> str:
    """What goes in ``ApiKey.sha256`` for a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()
