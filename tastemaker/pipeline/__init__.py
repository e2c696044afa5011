"""The recommendation pipeline: sources -> ranker -> rerankers -> explorer (see pipeline.py)."""

from tastemaker.pipeline.base import Explorer, Ranker, Reranker, Source, Stage
from tastemaker.pipeline.context import Context
from tastemaker.pipeline.explore import GreedyExplorer
from tastemaker.pipeline.pipeline import Pipeline, is_pipeline, merge_candidates
from tastemaker.pipeline.ranker import FusionRanker
from tastemaker.pipeline.sources import FreshSource, ModelSource, PopularitySource, TransitionsSource

__all__ = [
    "Context", "Explorer", "FreshSource", "FusionRanker", "GreedyExplorer", "ModelSource", "Pipeline",
    "PopularitySource", "Ranker", "Reranker", "Source", "Stage", "TransitionsSource", "is_pipeline", "merge_candidates",
]
