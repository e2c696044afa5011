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
    """Ranked items with scores, the source that found each and, optionally, why.

    ``item_ids`` are external ids, ``item_codes`` their vocabulary codes, in rank order.
    """

    item_ids: np.ndarray
    item_codes: np.ndarray
    scores: np.ndarray
    sources: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.item_codes)

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
