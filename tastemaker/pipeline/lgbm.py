"""The learned ranker: LightGBM LambdaRank over the merged candidates (the ``rank`` extra).

Trained by :meth:`Pipeline.fit <tastemaker.pipeline.Pipeline.fit>` without leakage, in
training cuts (``cuts``; see the pipeline's module docstring): at cut c each sampled user's
last c training events are held out of the data the sources are fitted on, and every
held-out item the sources retrieve is a relevant candidate. Every candidate list is one
LambdaRank group; lists where no source found a held-out item teach nothing and are left
out. A seeded tenth of the users (all their lists) is held out to stop boosting early, and
the last round of a validation plateau is kept.

Features: :mod:`tastemaker.pipeline.features` (each source's score and rank, item
popularity and age, user activity and recency, category overlap, and the cosine with the
history, its last five items and its last item).
The booster is saved as LightGBM's own text format inside the pipeline artifact (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from tastemaker.errors import MissingExtraError
from tastemaker.pipeline.base import Ranker, Source, StageConfig
from tastemaker.pipeline.context import Context, Resolved
from tastemaker.pipeline.features import candidate_features, feature_names
from tastemaker.types import FitOptions, ItemList, Query


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError:
        raise MissingExtraError("lightgbm", "rank") from None
    return lightgbm


class LightGBMConfig(StageConfig):
    """LightGBM's own knobs (``num_leaves``, ``learning_rate``, ``min_data_in_leaf``,
    ``feature_fraction``, ``lambdarank_truncation_level``), at most ``rounds`` boosting rounds
    with early stopping after ``early_stopping`` rounds without validation NDCG@10 gain;
    ``similarity_source``: the source whose model's item vectors give the content-similarity
    feature (default: the first source whose model has item vectors)."""

    rounds: int = Field(500, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    lambdarank_truncation_level: int = Field(20, ge=1)
    early_stopping: int = Field(30, ge=1)
    validation_share: float = Field(0.1, ge=0, lt=1)
    similarity_source: str | None = None
    # training cuts: at cut c every user's last c training events are held out, the sources are
    # refitted on what came before, and the first held-out event labels the candidates; more
    # cuts give more training groups (943 users make only ~550 groups with a hit in one cut)
    cuts: int = Field(4, ge=1)
    # training lists keep their chosen items and a seeded sample of this many others (None: all);
    # bounds memory and time on large data (Beauty: 4 cuts x 20k users x ~700 candidates)
    negatives: int | None = Field(None, ge=1)


class LightGBMRanker(Ranker):
    kind = "lightgbm"
    learned = True
    Config = LightGBMConfig
    config: LightGBMConfig
    booster_: Any
    features_: list[str]
    history_: list[dict[str, float]]

    def __init__(self, config: StageConfig | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        self._sources: list[Source] = []
        self._vectors: np.ndarray | None = None
        self._norms: np.ndarray | None = None

    # ------------------------------------------------------------------ sources and vectors
    def use_sources(self, sources: Sequence[Source]) -> None:
        self._sources = list(sources)
        self._vectors = self._norms = None

    def _item_vectors(self) -> np.ndarray | None:
        """The similarity source's item vectors in context codes (zeros where it lacks an item)."""
        context = self.context_
        if self._vectors is not None and len(self._vectors) == len(context.items):
            return self._vectors
        wanted = self.config.similarity_source
        for source in self._sources:
            model = getattr(source, "model_", None)
            if model is None or not hasattr(model, "item_vectors") or (wanted is not None and source.name != wanted):
                continue
            vectors = np.asarray(model.item_vectors(), dtype=np.float32)
            rows = model.items_.encode(context.items.ids, missing="mark")
            out = np.zeros((len(context.items), vectors.shape[1]), dtype=np.float32)
            out[rows >= 0] = vectors[rows[rows >= 0]]
            self._vectors = out
            return out
        return None

    def _matrix(self, queries: Sequence[Resolved], candidates: Sequence[ItemList]) -> np.ndarray:
        vectors = self._item_vectors()
        if vectors is not None and (self._norms is None or len(self._norms) != len(vectors)):
            self._norms = np.linalg.norm(vectors, axis=1)  # once per catalog, not per request
        norms = self._norms if vectors is not None else None
        names = self._source_names()
        rows = [candidate_features(self.context_, q, items, names, vectors, norms) for q, items in zip(queries, candidates, strict=True)]
        return np.concatenate(rows) if rows else np.zeros((0, len(self.features_)), np.float32)

    def _source_names(self) -> list[str]:
        return [name.removesuffix("__score") for name in self.features_ if name.endswith("__score")]

    # ------------------------------------------------------------------ training
    def features_for(
        self, context: Context, sources: Sequence[Source], queries: Sequence[Resolved], candidates: Sequence[ItemList]
    ) -> np.ndarray:
        """The feature matrix (candidate lists stacked) of ``candidates`` as retrieved by
        ``sources`` fitted in ``context``: what training cuts use, each with its own sources."""
        from tastemaker.pipeline.pipeline import FALLBACK

        self.features_ = feature_names([s.name for s in sources] + [FALLBACK])
        saved = (getattr(self, "context_", None), self._sources, self._vectors, self._norms)
        self.context_, self._sources, self._vectors, self._norms = context, list(sources), None, None
        try:
            return self._matrix(queries, candidates)
        finally:
            self.context_, self._sources, self._vectors, self._norms = saved

    def fit_features(
        self, x: np.ndarray, labels: Sequence[np.ndarray], options: FitOptions, groups: np.ndarray | None = None
    ) -> None:
        """Fit on stacked features ``x`` whose consecutive row blocks are the candidate lists
        labelled by ``labels`` (one array per list, 1.0 for a chosen item). ``groups``: per list,
        (user code, cut); without it every list is its own user in cut 1. Lists without a chosen
        item teach nothing and are left out. Early stopping watches a seeded
        ``validation_share`` of the users (every list of theirs, so no user is on both sides)."""
        lgb = _lightgbm()
        sizes = np.asarray([len(label) for label in labels], dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        if groups is None:
            groups = np.column_stack([np.arange(len(labels)), np.ones(len(labels), np.int64)])
        useful = np.asarray([label.sum() > 0 for label in labels], dtype=bool)
        if not useful.any():
            raise ValueError("no training user's held-out item was among the candidates: the sources find nothing to rank")
        # early stopping watches a seeded validation_share of the users (all their lists); the
        # rest train
        rng = np.random.default_rng(options.seed)
        users = np.unique(groups[useful, 0])
        n_valid = int(len(users) * self.config.validation_share) if len(users) >= 20 else 0
        held = np.isin(groups[:, 0], rng.permutation(users)[:n_valid])
        split = {"valid": np.flatnonzero(useful & held), "train": np.flatnonzero(useful & ~held)}

        def dataset(ids: np.ndarray) -> Any:
            rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in ids])
            y = np.concatenate([labels[i] for i in ids])
            return lgb.Dataset(x[rows], y, group=sizes[ids].tolist(), feature_name=self.features_, free_raw_data=True)

        params = {
            "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": self.config.learning_rate,
            "num_leaves": self.config.num_leaves, "min_data_in_leaf": self.config.min_data_in_leaf,
            "feature_fraction": self.config.feature_fraction, "lambdarank_truncation_level": self.config.lambdarank_truncation_level,
            "seed": options.seed, "deterministic": True, "num_threads": options.threads or 0, "verbosity": -1,
        }
        train_set = dataset(split["train"])
        valid_sets, callbacks, record = [], [], {}
        if len(split["valid"]):
            valid_sets = [dataset(split["valid"])]
            callbacks = [lgb.early_stopping(self.config.early_stopping, verbose=False), lgb.record_evaluation(record)]
        self.booster_ = lgb.train(params, train_set, num_boost_round=self.config.rounds, valid_sets=valid_sets, callbacks=callbacks)
        curve = record.get("valid_0", {}).get("ndcg@10", [])
        self.history_ = [{"round": float(k + 1), "valid_ndcg@10": float(v)} for k, v in enumerate(curve)]
        if curve:
            # LightGBM keeps the first round of a plateau; take its last: on a small validation
            # set NDCG@10 often stays flat from round 2 while the trees still break score ties
            values = np.asarray(curve)
            self.booster_.best_iteration = int(np.flatnonzero(values >= values.max() - 1e-12)[-1]) + 1
        self.training_groups_ = int(len(split["train"]))

    # ------------------------------------------------------------------ requests
    def rank(self, queries: Sequence[Query], candidates: Sequence[ItemList]) -> list[ItemList]:
        self._check_fitted()
        return self.rank_resolved(self.context_.resolve(queries), candidates)

    def rank_resolved(self, resolved: Sequence[Resolved], candidates: Sequence[ItemList]) -> list[ItemList]:
        self._check_fitted()
        sizes = [len(c) for c in candidates]
        if not sum(sizes):
            return list(candidates)
        # one thread: a request scores a few hundred rows, where OpenMP start-up and contention
        # with the other requests cost more than they save
        scores = self.booster_.predict(self._matrix(resolved, candidates), num_iteration=self.booster_.best_iteration or None,
                                       num_threads=1)
        out, start = [], 0
        for items, size in zip(candidates, sizes, strict=True):
            part = scores[start : start + size].astype(np.float32)
            start += size
            order = np.lexsort((items.item_codes, -part))
            out.append(items.take(order, scores=part[order]))
        return out

    def feature_importance(self) -> dict[str, float]:
        """Total gain per feature (what the ranker learned to use)."""
        gains = self.booster_.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(self.features_, gains, strict=True)}

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        text = self.booster_.model_to_string()
        return {
            "booster": np.frombuffer(text.encode(), dtype=np.uint8),
            "features": np.asarray(self.features_, dtype=str),
            "best_iteration": np.asarray([self.booster_.best_iteration or 0]),
        }

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        lgb = _lightgbm()
        self.booster_ = lgb.Booster(model_str=arrays["booster"].tobytes().decode())
        self.booster_.best_iteration = int(arrays["best_iteration"][0])
        self.features_ = [str(f) for f in arrays["features"]]
        self.history_ = []
