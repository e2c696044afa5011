"""Candidate sources: any fitted recommender, popularity (global, per category, trending),
fresh items and sequential rules (what users chose next after the history's last items). Each
returns context codes, best first, with the seen/excluded items left out
(:class:`tastemaker.protocols.Source`), and explains its own items.

Content similarity to the history is a model source too: ``ModelSource(model="content")``
(:class:`~tastemaker.models.content.ContentRetrieval`, the user as a recency-weighted mean of
their items' text vectors), which also makes an item recommendable the moment it is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from tastemaker.artifact import load_model
from tastemaker.data.dataset import Dataset
from tastemaker.index.recommender import IndexedRecommender, has_vectors
from tastemaker.models.base import Recommender, isin_small
from tastemaker.pipeline.base import Source, StageConfig, top_codes
from tastemaker.pipeline.context import DAY, Resolved
from tastemaker.types import FitOptions, ItemList, Query

#: How explanations word a history item's event type ("because you watched X").
VERBS = {
    "rating": "rated", "rated": "rated", "click": "clicked", "purchase": "bought", "buy": "bought",
    "view": "viewed", "watch": "watched", "play": "played", "like": "liked", "liked": "liked",
    "cart": "added to your cart",
}


def history_verb(query: Resolved, item_id: str) -> str:
    """The verb for ``item_id`` in ``query``'s history: ``Query.context["event_types"]`` maps
    item ids to the type of the user's last event on them (the service fills it); default "liked"."""
    types = query.query.context.get("event_types") if query.query.context else None
    return VERBS.get(str(types.get(item_id, "")), "liked") if isinstance(types, dict) else "liked"


# ---------------------------------------------------------------------- any recommender
class ModelSourceConfig(StageConfig):
    """``model``: a registered model name (``tastemaker.config.MODELS``); ``params``: its
    config; ``index``: serve a vector model through a vector index (``"auto"``: exact below
    ``exact_below`` items, HNSW above) or ``"none"`` (the model scores the whole catalog)."""

    model: str
    params: dict[str, Any] = {}
    index: Literal["auto", "exact", "hnsw", "none"] = "auto"
    exact_below: int = Field(20_000, ge=0)

    @field_validator("model")
    @classmethod
    def _known(cls, value: str) -> str:
        from tastemaker.config import MODELS

        if value not in MODELS:
            raise ValueError(f"unknown model {value!r}; choose from {', '.join(MODELS)}")
        return value

    @field_validator("params")
    @classmethod
    def _params_fit_the_model(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from tastemaker.config import model_class

        if "model" in info.data:  # checked now, not when the pipeline is first fitted
            try:
                model_class(info.data["model"]).Config(**value)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        return value


class ModelSource(Source):
    """A fitted :class:`~tastemaker.models.base.Recommender` as a source."""

    kind = "model"
    Config = ModelSourceConfig
    config: ModelSourceConfig
    model_: Recommender
    trained_items_: int
    _indexed: IndexedRecommender | None = None

    def __init__(self, config: StageConfig | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        if name is None:
            self.name = self.config.model

    @classmethod
    def of(cls, model: Recommender, name: str | None = None, **options: Any) -> ModelSource:
        """A source over an already fitted model (its config is taken from the model)."""
        source = cls(model=model.name, params=model.config.model_dump(mode="json"), name=name, **options)
        source.model_ = model
        source.trained_items_ = len(model.items_)
        return source

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        from tastemaker.config import model_class

        self.model_ = model_class(self.config.model)(**self.config.params).fit(dataset, options)
        self.trained_items_ = len(self.model_.items_)
        self._indexed = None

    def _answerer(self) -> Recommender | IndexedRecommender:
        if self.config.index == "none" or not has_vectors(self.model_):
            return self.model_
        if self._indexed is None:
            kind = "auto" if self.config.index == "auto" else self.config.index
            self._indexed = IndexedRecommender(self.model_, kind=kind, exact_below=self.config.exact_below,
                                               index_dir=getattr(self, "_index_dir", None))
        return self._indexed

    @property
    def index(self) -> Any:
        """The vector index the model is served through (None when it scores exactly)."""
        answerer = self._answerer()
        return answerer.index if isinstance(answerer, IndexedRecommender) else None

    def retrieve_resolved(self, queries: Sequence[Resolved], k: int) -> list[ItemList]:
        lists = self._answerer().recommend([q.query for q in queries], n=k)
        out = []
        for items in lists:
            if len(items) and items.sources[0] == "popular-fallback":
                out.append(ItemList.empty())  # nothing to go on: the popularity source's job
                continue
            codes = self._to_context()[items.item_codes]
            keep = codes >= 0
            out.append(self._listed(codes[keep], items.scores[keep]))
        return out

    def _to_context(self) -> np.ndarray:
        """Context code of each model item code (-1 where the context lacks it), rebuilt when
        either catalog grows: a per-request lookup of the ids as strings cost ~0.3 ms."""
        model_items, context_items = self.model_.items_, self.context_.items
        cached = getattr(self, "_code_map", None)
        if cached is None or cached[0] != (len(model_items), len(context_items)):
            mapping = context_items.encode(model_items.ids, missing="mark").astype(np.int64)
            cached = ((len(model_items), len(context_items)), mapping)
            self._code_map = cached
        return cached[1]

    def _from_context(self) -> np.ndarray:
        """Model code of each context code (-1 where the model lacks it), cached like
        :meth:`_to_context`."""
        model_items, context_items = self.model_.items_, self.context_.items
        cached = getattr(self, "_code_map_back", None)
        if cached is None or cached[0] != (len(model_items), len(context_items)):
            mapping = model_items.encode(context_items.ids, missing="mark").astype(np.int64)
            cached = ((len(model_items), len(context_items)), mapping)
            self._code_map_back = cached
        return cached[1]

    def model_rows(self, codes: np.ndarray) -> np.ndarray:
        """The model's item code of each context code in ``codes`` (-1 where it has none)."""
        to_model = self._from_context()
        codes = np.asarray(codes, dtype=np.int64)
        return np.where(codes < len(to_model), to_model[np.minimum(codes, len(to_model) - 1)], -1) if len(codes) else codes

    def vectors(self, queries: Sequence[Query], codes: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(user vectors (len(queries), d), item vectors (len(codes), d): zero rows for items
        the model lacks) of a vector model, as the model itself scores them; None for a model
        without vectors (EASE, ItemKNN)."""
        model: Any = self.model_
        if not has_vectors(model):
            return None
        users = np.asarray(model.user_vectors(model.resolve(list(queries))), dtype=np.float64)
        items = np.asarray(model.item_vectors(), dtype=np.float64)
        rows = self.model_rows(codes)
        rows = np.where(rows < len(items), rows, -1)
        block = np.where((rows >= 0)[:, None], items[np.maximum(rows, 0)], 0.0)
        return users, block

    def explain(self, query: Resolved, codes: np.ndarray) -> list[str]:
        """"because you watched X": X is the history item with the largest
        ``model.item_affinity`` to the item (EASE/ItemKNN: its weight; others: cosine)."""
        model = self.model_
        to_model = self._from_context()
        history = np.asarray(query.history[-50:], dtype=np.int64)  # the most recent explain best
        model_history = np.where(history < len(to_model), to_model[np.minimum(history, len(to_model) - 1)], -1) if len(history) else history
        known = np.flatnonzero(model_history >= 0)
        codes = np.asarray(codes, dtype=np.int64)
        targets = np.where(codes < len(to_model), to_model[np.minimum(codes, len(to_model) - 1)], -1) if len(codes) else codes
        if not len(known) or (targets < 0).any():
            return super().explain(query, codes)
        affinity = model.item_affinity(model_history[known], targets)
        if affinity is None:
            return ["recommended for you"] * len(codes)
        reasons = []
        ids = self.context_.items.ids
        for target, row in zip(targets, np.asarray(affinity), strict=True):
            code = int(history[known[int(np.argmax(row))]])
            best = str(ids[code])
            title = self.context_.titles[code] or best
            verb = history_verb(query, best)
            if target >= self.trained_items_:  # added after training: placed by its content
                reasons.append(f"new item like {title}, which you {verb}")
            else:
                reasons.append(f"because you {verb} {title}")
        return reasons

    def add_items(self, catalog: Any, codes: np.ndarray) -> None:
        if not hasattr(self.model_, "add_items"):
            return  # an ID model cannot place an item it has no events for
        answerer = self._answerer()
        if isinstance(answerer, IndexedRecommender):
            answerer.add_items(catalog)
        else:
            self.model_.add_items(catalog)  # type: ignore[attr-defined]

    def save_files(self, path: Path) -> None:
        self.model_.save(path / "model")
        answerer = self._answerer()
        if isinstance(answerer, IndexedRecommender):
            answerer.save_index(path / "index")

    def load_files(self, path: Path) -> None:
        self.model_ = load_model(path / "model")
        self.trained_items_ = len(self.model_.items_)
        self._index_dir = path / "index"
        self._indexed = None

    def arrays(self) -> dict[str, np.ndarray]:
        return {"trained_items": np.asarray([self.trained_items_])}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.trained_items_ = int(arrays["trained_items"][0])


# ---------------------------------------------------------------------- popularity
class PopularityConfig(StageConfig):
    """``mode``: ``"global"`` (distinct training users), ``"trending"`` (events weighted by
    recency: an event's weight halves every ``half_life_days`` before the newest training
    event) or ``"category"`` (global popularity times the share of the user's history in the
    item's categories: popular within what the user likes)."""

    mode: Literal["global", "trending", "category"] = "global"
    half_life_days: float = Field(7.0, gt=0)


class PopularitySource(Source):
    kind = "popularity"
    Config = PopularityConfig
    config: PopularityConfig
    scores_: np.ndarray

    def __init__(self, config: StageConfig | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        if name is None:
            self.name = {"global": "popular", "trending": "trending", "category": "popular-in-category"}[self.config.mode]

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        ctx = self.context_
        if self.config.mode == "trending":
            inter = dataset.interactions
            age = ctx.now - inter["timestamp"].to_numpy(dtype=np.float64)
            weight = np.exp2(-age / (self.config.half_life_days * DAY))
            self.scores_ = np.bincount(inter["item"].to_numpy(), weights=weight, minlength=len(ctx.items)).astype(np.float32)
        else:
            self.scores_ = ctx.popularity.astype(np.float32)

    def retrieve_resolved(self, queries: Sequence[Resolved], k: int) -> list[ItemList]:
        self._grow()
        out = []
        for query in queries:
            if query.allowed is not None:  # a short include list: score just those
                scores = self.scores_ if self.config.mode != "category" else self._category_scores(query)
                if scores is None:
                    out.append(ItemList.empty())
                    continue
                codes, top = top_codes(np.where(self.scores_ > 0, scores, -np.inf), k, query)
            elif self.config.mode == "category":
                codes, top = self._top_in_categories(query, k)
            else:
                codes = _first_unblocked(self._order(), query.blocked, k)
                top = self.scores_[codes]
            out.append(self._listed(codes, top))
        return out

    # The fast paths: a request walks precomputed orders instead of scoring the catalog (at
    # 100k items ~10 us instead of ~1 ms). The orders are rebuilt when items are added.
    def _order(self) -> np.ndarray:
        """Codes with a positive score, best first (ties: the lower code)."""
        cached = getattr(self, "_order_cache", None)
        if cached is None or cached[0] != len(self.scores_):
            used = np.flatnonzero(self.scores_ > 0)
            cached = (len(self.scores_), used[np.lexsort((used, -self.scores_[used]))].astype(np.int32))
            self._order_cache = cached
        return cached[1]

    def _category_lists(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, codes): per category, its used items best first."""
        cached = getattr(self, "_category_cache", None)
        if cached is None or cached[0] != len(self.scores_):
            order = self._order()
            by_category = sp.csr_matrix(self.context_.categories[order].T)  # rows: categories; columns: positions
            by_category.sort_indices()  # positions ascending = best first
            cached = (len(self.scores_), (by_category.indptr.astype(np.int64), order[by_category.indices]))
            self._category_cache = cached
        return cached[1]

    def _shares(self, query: Resolved) -> np.ndarray | None:
        """The share of the user's history in each category (None without history)."""
        if not len(query.history) or self.context_.categories.shape[1] == 0:
            return None
        return self.context_.category_shares(query.history)

    def _category_scores(self, query: Resolved) -> np.ndarray | None:
        """Per item: popularity x the largest share of the history in one of its categories."""
        shares = self._shares(query)
        if shares is None:
            return None
        per_item = np.asarray(self.context_.categories.multiply(shares[None, :]).max(axis=1).todense()).ravel()
        scores = self.scores_ * per_item.astype(np.float32)
        return np.where(scores > 0, scores, -np.inf).astype(np.float32)

    def _top_in_categories(self, query: Resolved, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best of popularity x category share, from each liked category's first k
        unblocked items (an item outside those is beaten by k items of its best category)."""
        shares = self._shares(query)
        if shares is None:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        indptr, codes = self._category_lists()
        liked = np.flatnonzero(shares > 0)
        if not len(liked):
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        # every liked category's head, long enough for k unblocked items, in one array: one
        # mask lookup instead of an isin per category (this ran per request, ~17 categories)
        depth = k + len(query.blocked)
        heads = [codes[indptr[c] : min(indptr[c + 1], indptr[c] + depth)] for c in liked]
        lengths = np.fromiter((len(h) for h in heads), dtype=np.int64, count=len(heads))
        found = np.concatenate(heads).astype(np.int64)
        owner = np.repeat(np.arange(len(liked)), lengths)
        keep = np.ones(len(found), dtype=bool)
        if len(query.blocked):
            blocked = np.zeros(max(len(self.scores_), int(query.blocked.max()) + 1), dtype=bool)
            blocked[query.blocked] = True
            keep = ~blocked[found]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        kept_before = np.cumsum(keep) - keep  # kept items before each position, over all heads
        keep &= (kept_before - kept_before[starts][owner]) < k  # the first k kept of each category
        found, owner = found[keep], owner[keep]
        if not len(found):
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        values = self.scores_[found].astype(np.float64) * shares[liked][owner]
        order = np.lexsort((-values, found))  # per item, its best category first
        first = np.concatenate([[True], found[order][1:] != found[order][:-1]])
        found, values = found[order][first], values[order][first]
        positive = values > 0
        found, values = found[positive], values[positive].astype(np.float32)
        order = np.lexsort((found, -values))[:k]
        return found[order].astype(np.int32), values[order]

    def explain(self, query: Resolved, codes: np.ndarray) -> list[str]:
        ctx = self.context_
        if self.config.mode == "trending":
            return ["trending now"] * len(codes)
        names = ctx.category_names
        cats = ctx.categories
        if self.config.mode == "category":
            # how many history items are in each category, counted once for all the items
            counts = ctx.category_shares(query.history) * len(query.history)
        out = []
        for code in np.asarray(codes, dtype=np.int64):
            own = cats.indices[cats.indptr[code] : cats.indptr[code + 1]]
            if not len(own):
                out.append("popular right now")
            elif self.config.mode == "category":
                # the item's category the history holds most (ties: the item's first listed)
                out.append(f"popular in {names[own[int(np.argmax(counts[own]))]]}, which you like")
            else:
                out.append(f"popular in {names[own[0]]}")
        return out

    def _grow(self) -> None:
        n = len(self.context_.items)
        if len(self.scores_) < n:  # items added since: no events yet
            self.scores_ = np.concatenate([self.scores_, np.zeros(n - len(self.scores_), np.float32)])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores_}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.scores_ = arrays["scores"]


def _first_unblocked(order: np.ndarray, blocked: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` codes of ``order`` that are not in ``blocked``."""
    if not len(blocked):
        return order[:k]
    head = order[: min(len(order), k + len(blocked))]  # enough, however many of them are blocked
    return head[~isin_small(head, blocked)][:k]


# ---------------------------------------------------------------------- fresh items
class FreshConfig(StageConfig):
    """The newest items by ``created_at`` (items without one never qualify), at most
    ``max_age_days`` older than the newest item; the score is minus the age in days."""

    max_age_days: float | None = Field(None, gt=0)


class FreshSource(Source):
    kind = "fresh"
    Config = FreshConfig
    config: FreshConfig

    def __init__(self, config: StageConfig | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        if name is None:
            self.name = "fresh"

    def retrieve_resolved(self, queries: Sequence[Resolved], k: int) -> list[ItemList]:
        created = self.context_.created_at
        known = np.isfinite(created)
        if not known.any():
            return [ItemList.empty() for _ in queries]
        age_days = (created[known].max() - created) / DAY  # float32 cannot rank raw unix times
        if self.config.max_age_days is not None:
            known &= age_days <= self.config.max_age_days
        scores = np.where(known, -age_days, -np.inf).astype(np.float32)  # newest first
        return [self._listed(*top_codes(scores, k, query)) for query in queries]

    def explain(self, query: Resolved, codes: np.ndarray) -> list[str]:
        return ["new in the catalog"] * len(codes)



# ---------------------------------------------------------------------- sequential rules
class TransitionsConfig(StageConfig):
    """Sequential rules (SR; Ludewig & Jannach, *Evaluation of session-based recommendation
    algorithms*, 2018): item j scores for a history ending in item i by how often users chose j
    within ``window`` steps after i, each co-occurrence weighted 1 / gap; each row is
    normalised to sum 1. A query's score sums the rows of its last ``recent`` items, the k-th
    most recent weighted ``decay`` ** k."""

    window: int = Field(3, ge=1, le=50)
    recent: int = Field(3, ge=1, le=50)
    decay: float = Field(0.5, gt=0, le=1)


class TransitionsSource(Source):
    """What users chose next after the items the query ended with: the order of the history,
    which set-based models (EASE, ItemKNN, ALS) ignore, at the cost of one sparse row per
    recent item."""

    kind = "transitions"
    Config = TransitionsConfig
    config: TransitionsConfig
    rules_: sp.csr_matrix

    def __init__(self, config: StageConfig | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        if name is None:
            self.name = "next"

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        ctx = self.context_
        n = len(ctx.items)
        indptr, items = ctx.sequence_indptr, ctx.sequence_items
        position = np.arange(len(items), dtype=np.int64)
        user_end = np.repeat(indptr[1:], np.diff(indptr))
        rows, cols, vals = [], [], []
        for gap in range(1, self.config.window + 1):
            ok = position + gap < user_end  # the pair stays inside one user's sequence
            rows.append(items[position[ok]])
            cols.append(items[position[ok] + gap])
            vals.append(np.full(int(ok.sum()), 1.0 / gap, np.float32))
        rules = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float32)
        rules.setdiag(0)  # a repeat of the same item is not a rule
        rules.eliminate_zeros()
        sums = np.asarray(rules.sum(axis=1)).ravel()
        self.rules_ = sp.csr_matrix(sp.diags(np.where(sums > 0, 1.0 / np.maximum(sums, 1e-12), 0.0).astype(np.float32)) @ rules)

    def _profile(self, query: Resolved) -> tuple[np.ndarray, np.ndarray]:
        """The last ``recent`` distinct history items with rules, newest first, and their weights."""
        recent: list[int] = []
        for code in query.history[::-1]:
            code = int(code)
            if code < self.rules_.shape[0] and code not in recent:
                recent.append(code)
            if len(recent) == self.config.recent:
                break
        codes = np.asarray(recent, dtype=np.int64)
        return codes, self.config.decay ** np.arange(len(codes), dtype=np.float32)

    def retrieve_resolved(self, queries: Sequence[Resolved], k: int) -> list[ItemList]:
        n = len(self.context_.items)
        out = []
        for query in queries:
            codes, weights = self._profile(query)
            if not len(codes):
                out.append(ItemList.empty())
                continue
            row = sp.csr_matrix(weights[None, :]) @ self.rules_[codes]
            scores = np.full(n, -np.inf, np.float32)
            scores[row.indices] = row.data  # items without a rule from these are not candidates
            out.append(self._listed(*top_codes(scores, k, query)))
        return out

    def explain(self, query: Resolved, codes: np.ndarray) -> list[str]:
        recent, weights = self._profile(query)
        codes = np.asarray(codes, dtype=np.int64)
        if not len(recent):
            return [f"recommended by {self.name}"] * len(codes)
        inside = codes < self.rules_.shape[1]  # items added since the fit have no rules
        block = np.zeros((len(recent), len(codes)))
        block[:, inside] = self.rules_[recent][:, codes[inside]].toarray() * weights[:, None]
        out = []
        for column in block.T:  # per item: the recent item whose rule adds the most
            if column.max() <= 0:
                out.append(f"recommended by {self.name}")
                continue
            before = int(recent[int(np.argmax(column))])
            out.append(f"often chosen after {self.context_.titles[before] or self.context_.items.decode([before])[0]}")
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"data": self.rules_.data, "indices": self.rules_.indices, "indptr": self.rules_.indptr,
                "shape": np.asarray(self.rules_.shape, dtype=np.int64)}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        shape = tuple(int(x) for x in arrays["shape"])
        self.rules_ = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
