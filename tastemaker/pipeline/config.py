"""A pipeline as a typed TOML file: :func:`load_pipeline_config` and :func:`build_pipeline`.

    candidates = 200                 # per source
    [[sources]]
    kind = "model"                   # tastemaker.config.STAGES names every kind
    model = "ease"
    params = { reg = 50.0 }
    [[sources]]
    kind = "popularity"
    [ranker]
    kind = "fusion"
    [[rerankers]]
    kind = "mmr"
    weight = 0.3

Every key is checked against the stage's config: an unknown key or a bad value is a
:class:`PipelineConfigError` naming its path in the file (``rerankers[0].weight: Input should
be less than or equal to 1``). ``name`` (optional) names a stage; by default its kind or model.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tastemaker.errors import TastemakerError
from tastemaker.pipeline.pipeline import Pipeline


class PipelineConfigError(TastemakerError, ValueError):
    """A pipeline file that cannot be built; the message names the key's path."""


class StageSpec(BaseModel):
    """One stage of a pipeline file: ``kind``, an optional ``name``, and its config."""

    model_config = ConfigDict(extra="allow")
    kind: str
    name: str | None = None


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidates: int = Field(200, ge=1, le=100_000)
    rerank_depth: int = Field(100, ge=1, le=100_000)
    ranker_users: int = Field(20_000, ge=1)
    sources: list[StageSpec] = Field(min_length=1)
    ranker: StageSpec | None = None
    rerankers: list[StageSpec] = []
    explorer: StageSpec | None = None


def _where(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _build(role: str, spec: StageSpec, where: str) -> Any:
    from tastemaker.config import stage_class

    try:
        cls = stage_class(role, spec.kind)
    except ValueError as exc:
        raise PipelineConfigError(f"{where}.kind: {exc}") from None
    params = dict(spec.model_extra or {})
    try:
        config = cls.Config(**params)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PipelineConfigError(f"{_where(where, tuple(first['loc']))}: {first['msg']}") from None
    return cls(config, name=spec.name)


def build_pipeline(data: Mapping[str, Any], origin: str = "pipeline") -> Pipeline:
    """A pipeline (unfitted) from a parsed pipeline file."""
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PipelineConfigError(f"{origin}: {_where('', tuple(first['loc'])) or 'file'}: {first['msg']}") from None
    try:
        sources = [_build("source", s, f"sources[{k}]") for k, s in enumerate(spec.sources)]
        ranker = _build("ranker", spec.ranker, "ranker") if spec.ranker else None
        rerankers = [_build("reranker", r, f"rerankers[{k}]") for k, r in enumerate(spec.rerankers)]
        explorer = _build("explorer", spec.explorer, "explorer") if spec.explorer else None
        return Pipeline(sources, ranker, rerankers, explorer, candidates=spec.candidates,
                        rerank_depth=spec.rerank_depth, ranker_users=spec.ranker_users)
    except PipelineConfigError as exc:
        raise PipelineConfigError(f"{origin}: {exc}") from None
    except ValueError as exc:  # e.g. two stages with one name
        raise PipelineConfigError(f"{origin}: {exc}") from None


def load_pipeline_config(path: str | Path) -> Pipeline:
    """The pipeline described by a TOML file, or a shipped example by name (``"default"``,
    see :func:`example_pipelines`)."""
    file = Path(path)
    if not file.is_file() and str(path) in example_pipelines():
        file = Path(str(resources.files("tastemaker.pipelines") / f"{path}.toml"))
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise PipelineConfigError(f"{path}: no such file (shipped pipelines: {', '.join(example_pipelines())})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineConfigError(f"{path}: not valid TOML: {exc}") from None
    return build_pipeline(data, origin=str(path))


def example_pipelines() -> list[str]:
    """The names of the pipeline files shipped in ``tastemaker/pipelines/``."""
    folder = resources.files("tastemaker.pipelines")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))
