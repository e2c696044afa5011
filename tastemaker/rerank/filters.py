"""Business filters: drop the items a list must not show, keep the rest in the ranker's order.

Each rule is off unless configured:

* ``categories``: keep only items with at least one of these categories;
* ``exclude_categories``: drop items with any of these categories;
* ``min_created_at`` (unix seconds) and ``max_age_days``: drop items created before the
  cut-off. The age is counted back from the request's ``Query.context["now"]`` (unix seconds)
  when the caller gives one, else from the newest training event, so offline evaluation does
  not depend on the wall clock. Items without a creation time are kept unless
  ``keep_undated`` is False;
* ``exclude_unavailable``: drop the item ids listed in ``Query.context["unavailable"]`` (any
  collection of ids the caller marks out of stock, region-locked...);
* always: the query's own rules, checked again (``exclude``, ``include``, and seen items
  unless ``exclude_seen`` is False): the sources apply them, but a list can also reach a
  reranker from elsewhere (a fallback, a custom source), and a filter is the last word.

A filter decides no item's place, so it keeps every item's source and reason; it has no
``weight``.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from pydantic import Field

from tastemaker.data.dataset import Dataset
from tastemaker.pipeline.base import Reranker, StageConfig
from tastemaker.pipeline.context import DAY
from tastemaker.types import FitOptions, ItemList, Query


class FilterConfig(StageConfig):
    """See the module docstring for each rule."""

    categories: list[str] | None = None
    exclude_categories: list[str] = []
    min_created_at: float | None = None
    max_age_days: float | None = Field(None, gt=0)
    keep_undated: bool = True
    exclude_unavailable: bool = True


class FilterReranker(Reranker):
    """See the module docstring."""

    kind = "filter"
    Config = FilterConfig
    config: FilterConfig

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        # A misspelt category would silently empty (or not filter) every list: refuse it now.
        known = {str(name) for name in self.context_.category_names}
        named = set(self.config.categories or ()) | set(self.config.exclude_categories)
        unknown = sorted(named - known)
        if unknown:
            shown = ", ".join(sorted(known)[:20]) + (" ..." if len(known) > 20 else "")
            raise ValueError(f"{self.name}: unknown categories {', '.join(map(repr, unknown))}; the catalog has: {shown or 'none'}")

    def _columns(self, names: Collection[str]) -> np.ndarray:
        lookup = {str(name): k for k, name in enumerate(self.context_.category_names)}
        return np.asarray(sorted(lookup[n] for n in names if n in lookup), dtype=np.int64)

    def keep(self, query: Query, items: ItemList) -> np.ndarray:
        """One bool per item of ``items``: does it pass every rule?"""
        self._check_fitted()
        ctx, config = self.context_, self.config
        codes = items.item_codes.astype(np.int64)
        keep = np.ones(len(codes), dtype=bool)
        if not len(codes):
            return keep
        if config.categories is not None or config.exclude_categories:
            rows = ctx.categories[codes]
            if config.categories is not None:
                keep &= np.asarray(rows[:, self._columns(config.categories)].sum(axis=1)).ravel() > 0
            if config.exclude_categories:
                keep &= np.asarray(rows[:, self._columns(config.exclude_categories)].sum(axis=1)).ravel() == 0
        if config.min_created_at is not None or config.max_age_days is not None:
            created = ctx.created_at[codes]
            cut = -np.inf
            if config.min_created_at is not None:
                cut = config.min_created_at
            if config.max_age_days is not None:
                now = query.context.get("now") if query.context else None
                now = float(now) if isinstance(now, int | float) else ctx.now
                cut = max(cut, now - config.max_age_days * DAY)
            dated = np.isfinite(created)
            keep &= np.where(dated, created >= cut, config.keep_undated)
        if config.exclude_unavailable and query.context:
            unavailable = query.context.get("unavailable")
            if unavailable is not None:
                ids = [unavailable] if isinstance(unavailable, str) else list(unavailable)  # one id, or many
                keep &= ~np.isin(codes, ctx.items.encode(ids, missing="drop"))
        resolved = ctx.resolve([query])[0]
        if len(resolved.blocked):
            keep &= ~np.isin(codes, resolved.blocked)
        if resolved.allowed is not None:
            keep &= np.isin(codes, resolved.allowed)
        return keep

    def rerank(self, query: Query, items: ItemList, n: int) -> ItemList:
        passed = np.flatnonzero(self.keep(query, items))
        return items.take(passed[: max(int(n), 0)])
