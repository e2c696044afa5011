"""The values passed between stages: :class:`Query` in, :class:`ItemList` out.

:class:`FitOptions` carries what is about *this run* (seed, threads, device, progress bars)
and is kept out of model configs, so the same config trains anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Query:
    """One request for recommendations.

    * ``user``: an external user id, or None for an anonymous session. An id the model has
      never seen is treated like an anonymous user (it is not an error): the model scores
      from ``history`` alone, and with no history at all it returns the most popular items.
    * ``history``: recent item ids, appended to what the model already knows of the user
      (e.g. events that arrived after training). Unknown item ids are ignored.
    * ``include``: if given, only these items may be recommended.
    * ``exclude``: items never to recommend.
    * ``exclude_seen``: leave out items the user has already interacted with (default).
    * ``context``: free-form request context (time, device, page...) for context-aware stages.
    """

    user: str | None = None
    history: Sequence[str] = ()
    include: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    exclude_seen: bool = True
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemList:
    """Ranked items with scores, the source(s) that found each and, optionally, why.

    The one value passed between stages (sources, ranker, rerankers, explorer).
    ``item_ids`` are external ids, ``item_codes`` their vocabulary codes, in rank order;
    ``scores`` are the scores of the stage that made the list. ``sources[i]`` names the stage
    that placed item i (a source's name, or a reranker's, e.g. ``"mmr"``) and ``reasons[i]``
    says why, when known. A merged candidate list also carries, per source, the score and the
    0-based rank that source gave each item: ``source_scores[name][i]`` (NaN where that source
    did not retrieve item i) and ``source_ranks[name][i]`` (-1 there).
    """

    item_ids: np.ndarray
    item_codes: np.ndarray
    scores: np.ndarray
    sources: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    source_scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    source_ranks: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.item_codes)

    @classmethod
    def empty(cls) -> ItemList:
        return cls(np.zeros(0, dtype=object), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))

    def take(self, order: Sequence[int] | np.ndarray, scores: np.ndarray | None = None) -> ItemList:
        """The items at positions ``order`` (a subset, reordered), every column kept aligned;
        ``scores`` replaces the scores (one per taken item)."""
        order = np.asarray(order, dtype=np.int64)
        pick = [int(k) for k in order]
        return ItemList(
            self.item_ids[order],
            self.item_codes[order],
            self.scores[order] if scores is None else np.asarray(scores, dtype=np.float32),
            tuple(self.sources[k] for k in pick) if self.sources else (),
            tuple(self.reasons[k] for k in pick) if self.reasons else (),
            {name: col[order] for name, col in self.source_scores.items()},
            {name: col[order] for name, col in self.source_ranks.items()},
        )

    def with_provenance(self, sources: Sequence[str] | None = None, reasons: Sequence[str] | None = None) -> ItemList:
        """The same list with ``sources`` and/or ``reasons`` replaced."""
        return ItemList(
            self.item_ids, self.item_codes, self.scores,
            tuple(sources) if sources is not None else self.sources,
            tuple(reasons) if reasons is not None else self.reasons,
            self.source_scores, self.source_ranks,
        )

    def to_records(self) -> list[dict[str, Any]]:
        """A JSON-friendly list: one dict per item."""
        out = []
        for i in range(len(self)):
            rec: dict[str, Any] = {"item_id": str(self.item_ids[i]), "score": float(self.scores[i])}
            if self.sources:
                rec["source"] = self.sources[i]
            if self.reasons:
                rec["reason"] = self.reasons[i]
            out.append(rec)
        return out


@dataclass(frozen=True)
class Slate:
    """What the explorer shows: ``items`` in display order and, per item, the probability
    (``propensities[i]``) with which the policy would have put it there. Logged with each
    impression, so any other policy can be judged offline (IPS, SNIPS, DR)."""

    items: ItemList
    propensities: np.ndarray
    policy: str = "greedy"
    policy_version: str = "0"

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class FitOptions:
    """Run options for ``fit``: never part of a model's config.

    ``threads`` caps BLAS/OpenMP/torch threads (on a busy 2-core machine 1 is often fastest).
    ``checkpoint`` (neural models): a file to which training state is written after every
    epoch; a fit given an existing checkpoint resumes from it.
    """

    seed: int = 42
    threads: int | None = None
    device: str = "auto"
    progress: bool = True
    checkpoint: str | None = None
