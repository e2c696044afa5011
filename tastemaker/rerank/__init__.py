"""Rerankers: the pipeline stage between the ranker and the explorer.

Each takes one ranked list and returns at most ``n`` of its items, none twice
(:class:`tastemaker.protocols.Reranker`):

* :class:`FilterReranker` (``kind = "filter"``): business rules (categories, age,
  unavailable items, the query's own include/exclude), order kept;
* :class:`MMRReranker` (``"mmr"``): variety, maximal marginal relevance (Carbonell &
  Goldstein 1998) over item vectors or categories;
* :class:`CalibrationReranker` (``"calibration"``): the list's category mix towards the
  user's (Steck 2018); :func:`miscalibration` is the KL measure it minimises;
* :class:`PopularityReranker` (``"popularity"``): popularity-bias correction, personalised
  xQuAD over head and tail items (Abdollahpouri et al. 2019).

The trade-off rerankers share one knob, ``weight`` in [0, 1] (0 keeps the ranking), and one
greedy loop (:mod:`tastemaker.rerank.base`); an item one of them promotes carries the
reranker's name in ``sources`` and a reason ("added for variety").
"""

from tastemaker.rerank.base import GreedyReranker, TradeOffConfig, relevance
from tastemaker.rerank.calibration import CalibrationReranker, history_distribution, list_distribution, miscalibration
from tastemaker.rerank.filters import FilterReranker
from tastemaker.rerank.mmr import MMRReranker
from tastemaker.rerank.popularity import PopularityReranker, head_items

__all__ = [
    "CalibrationReranker", "FilterReranker", "GreedyReranker", "MMRReranker", "PopularityReranker", "TradeOffConfig",
    "head_items", "history_distribution", "list_distribution", "miscalibration", "relevance",
]
