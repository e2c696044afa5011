"""Content: item text (describe), text vectors (encoders) and semantic IDs (RQ-VAE).

* :mod:`~tastemaker.content.describe`: ``describe(item)``, ``describe_catalog``,
  ``with_descriptions`` and ``OpenAIDescriber`` (an LLM writes the description);
* :mod:`~tastemaker.content.encoders`: the ``TextEncoder`` contract, ``MiniLMEncoder``
  (default, offline), ``SentenceTransformerEncoder``, ``TfidfSvdEncoder`` (no extra) and the
  ``get_encoder`` registry; vectors are cached on disk by text hash
  (:mod:`~tastemaker.content.cache`);
* :mod:`~tastemaker.content.semantic_ids`: ``SemanticIDs``, an RQ-VAE with collision breaking
  (needs torch), and ``semantic_id_table``;
* :mod:`~tastemaker.content.sid_tokens`: ``ItemTokenizer``, item -> embedding-table pieces
  (hashed IDs, SID n-grams, SentencePiece over SIDs);
* :mod:`~tastemaker.content.features`: the catalog columns models read (``text_vector``,
  ``semantic_id``): ``text_vectors``, ``with_text_vectors``, ``with_semantic_ids``.

Names are imported lazily: ``import tastemaker.content`` loads neither torch nor
sentence-transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "describe": "tastemaker.content.describe",
    "describe_catalog": "tastemaker.content.describe",
    "with_descriptions": "tastemaker.content.describe",
    "Describer": "tastemaker.content.describe",
    "OpenAIDescriber": "tastemaker.content.describe",
    "TextEncoder": "tastemaker.content.encoders",
    "MiniLMEncoder": "tastemaker.content.encoders",
    "SentenceTransformerEncoder": "tastemaker.content.encoders",
    "ModelNotFoundError": "tastemaker.content.encoders",
    "get_encoder": "tastemaker.content.encoders",
    "TfidfSvdEncoder": "tastemaker.content.tfidf",
    "EmbeddingCache": "tastemaker.content.cache",
    "SemanticIDs": "tastemaker.content.semantic_ids",
    "SemanticIDConfig": "tastemaker.content.semantic_ids",
    "semantic_id_table": "tastemaker.content.semantic_ids",
    "ItemTokenizer": "tastemaker.content.sid_tokens",
    "item_texts": "tastemaker.content.features",
    "text_vectors": "tastemaker.content.features",
    "with_text_vectors": "tastemaker.content.features",
    "with_semantic_ids": "tastemaker.content.features",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tastemaker.content' has no attribute {name!r}")
