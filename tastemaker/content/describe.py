"""Item descriptions: one text per item, built from its catalog fields, for a text encoder.

:func:`describe` is the default describer. It writes, in this order and skipping empty or
missing (None / NaN) fields::

    "<title>. Categories: a, b. Brand: X. Tags: t1, t2. <text> <description>"

* list fields (``categories``, ``tags``) lose empty entries and repeats (case-insensitive,
  first spelling kept); a tag that is also a category is dropped;
* free text (``text``, then ``description``) loses a leading copy of the title, and is dropped
  when what is left repeats what is already written, whole or as a comma-separated list of
  written values (MovieLens' ``text`` is its tags joined; UniSRec's starts with the title);
* whitespace is collapsed; ``max_chars`` cuts the result at a word boundary.

A describer is any callable ``(item: Mapping) -> str`` (:class:`Describer`): an LLM or MLLM
that writes richer text ("Describe What You See", De Nadai et al. 2025) plugs in here, e.g.
:class:`OpenAIDescriber` over any OpenAI-compatible chat-completions server.

:func:`describe_catalog` maps a describer over a catalog; :func:`with_descriptions` returns a
new :class:`~tastemaker.data.dataset.Dataset` whose catalog has a ``description`` column. That
column is this module's output, so it is never read as input: re-describing gives the same
result.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from tastemaker.errors import MissingExtraError, TastemakerError

if TYPE_CHECKING:
    from tastemaker.data.dataset import Dataset

OUTPUT_COLUMN = "description"
_SPACE = re.compile(r"\s+")


@runtime_checkable
class Describer(Protocol):
    """Turns one catalog row (a mapping of column -> value) into a description."""

    def __call__(self, item: Mapping[str, Any]) -> str: ...


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _clean(value: Any) -> str:
    """A scalar as trimmed single-spaced text ('' for None/NaN)."""
    if _is_missing(value):
        return ""
    return _SPACE.sub(" ", str(value)).strip()


def _clean_list(value: Any) -> list[str]:
    """A list-like field as distinct non-empty strings (a plain string is one entry)."""
    if _is_missing(value):
        return []
    entries: Iterable[Any] = value if isinstance(value, list | tuple | set | np.ndarray | pd.Series) else [value]
    seen: set[str] = set()
    out: list[str] = []
    for entry in entries:
        text = _clean(entry)
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            out.append(text)
    return out


def _sentence(text: str) -> str:
    return text if text[-1] in ".!?" else text + "."


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def _strip_prefix(text: str, prefix: str) -> str:
    rest = text[len(prefix) :]
    if prefix and text.casefold().startswith(prefix.casefold()) and not rest[:1].isalnum():
        return rest.lstrip(" .,:;-|").strip()
    return text  # no prefix, or it ends inside a word ("T" of "Tools")


def _truncate(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip(" ,;:.") + "..."


def describe(item: Mapping[str, Any], *, max_chars: int | None = None) -> str:
    """The default description of one catalog row (see the module doc for the format)."""
    title = _clean(item.get("title"))
    categories = _clean_list(item.get("categories"))
    brand = _clean(item.get("brand"))
    category_keys = {c.casefold() for c in categories}
    tags = [t for t in _clean_list(item.get("tags")) if t.casefold() not in category_keys]

    parts: list[str] = []
    written: set[str] = set()  # normalised pieces already in the description
    if title:
        parts.append(_sentence(title))
        written.add(_norm(title))
    for label, values in (("Categories", categories), ("Brand", [brand] if brand else []), ("Tags", tags)):
        if values:
            parts.append(f"{label}: {', '.join(values)}.")
            written.add(_norm(", ".join(values)))
            written.update(_norm(v) for v in values)
    for field in ("text", "description"):
        text = _strip_prefix(_clean(item.get(field)), title)
        key = _norm(text)
        pieces = {_norm(piece) for piece in re.split(r"[,;|]", text)} - {""}
        if key and key not in written and not pieces <= written:
            parts.append(_sentence(text))
            written.add(key)
    return _truncate(" ".join(parts), max_chars)


def describe_catalog(
    catalog: pd.DataFrame, describer: Describer | None = None, *, workers: int = 1
) -> pd.Series:
    """One description per catalog row (same index, named ``description``).

    ``describer`` defaults to :func:`describe`; the catalog's own ``description`` column (this
    function's output) is not passed to it. ``workers`` > 1 runs the describer in threads
    (useful for a describer that waits on a server); the order is kept either way.
    """
    describe_one: Describer = describer if describer is not None else describe
    rows = catalog.drop(columns=[OUTPUT_COLUMN], errors="ignore").to_dict("records")

    def run(row: dict[str, Any]) -> str:
        text = describe_one(row)
        if not isinstance(text, str):
            raise TypeError(f"the describer returned {type(text).__name__} for item {row.get('item_id')!r}, not str")
        return text

    if workers > 1 and len(rows) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            texts = list(pool.map(run, rows))
    else:
        texts = [run(row) for row in rows]
    return pd.Series(texts, index=catalog.index, name=OUTPUT_COLUMN, dtype=object)


def with_descriptions(dataset: Dataset, describer: Describer | None = None, *, workers: int = 1) -> Dataset:
    """A copy of ``dataset`` whose catalog has a ``description`` column (the original is unchanged)."""
    catalog = dataset.catalog.copy()
    catalog[OUTPUT_COLUMN] = describe_catalog(dataset.catalog, describer, workers=workers)
    return replace(dataset, catalog=catalog)


# ---------------------------------------------------------------------- an LLM describer
class DescriberError(TastemakerError, RuntimeError):
    """A describer service failed or answered outside the protocol."""


DEFAULT_PROMPT = (
    "Write a short, factual description (at most three sentences) of this catalog item for a "
    "recommender system: what it is, who it is for and what it is like. Use only the facts given "
    "and general knowledge about the item; do not invent prices, ratings or specifications. "
    "Answer with the description only."
)


class OpenAIDescriber:
    """Asks an OpenAI-compatible ``/v1/chat/completions`` server to describe each item.

    The request is a system message (``prompt``) and a user message holding the item's facts
    (:func:`describe` of the row); the answer is ``choices[0].message.content``. ``base_url``
    is the server root (``http://host:port``) or its ``/v1`` root. Retries ``retries`` times on
    connection errors, 429 and 5xx, with exponential backoff. Needs ``httpx`` (extra ``llm``).
    Use it as a context manager, or call :meth:`close`, to release the connection pool.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        prompt: str = DEFAULT_PROMPT,
        temperature: float = 0.0,
        max_tokens: int = 160,
        timeout: float = 60.0,
        retries: int = 2,
        max_fact_chars: int = 2000,
    ) -> None:
        root = base_url.rstrip("/")
        self.url = f"{root}/chat/completions" if root.endswith("/v1") else f"{root}/v1/chat/completions"
        self.model = model
        self.api_key = api_key
        self.prompt = prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.retries = retries
        self.max_fact_chars = max_fact_chars
        self._client: Any = None

    def _http(self) -> Any:
        if self._client is None:
            try:
                import httpx
            except ImportError as exc:
                raise MissingExtraError("httpx", "llm") from exc
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(timeout=self.timeout, headers=headers)
        return self._client

    def request_body(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The chat-completions request for ``item``."""
        facts = describe(item, max_chars=self.max_fact_chars)
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": self.prompt},
                {"role": "user", "content": f"Item: {facts}"},
            ],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": False,
        }

    def __call__(self, item: Mapping[str, Any]) -> str:
        import httpx

        client = self._http()
        body = self.request_body(item)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = client.post(self.url, json=body)
            except httpx.TransportError as exc:
                if last:
                    raise DescriberError(f"POST {self.url} failed: {exc}") from exc
            else:
                if response.status_code == 200:
                    return self._content(response)
                if last or not (response.status_code == 429 or response.status_code >= 500):
                    raise DescriberError(f"POST {self.url} answered {response.status_code}: {response.text[:300]}")
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _content(self, response: Any) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise DescriberError(f"{self.url} answered outside the chat-completions protocol: {response.text[:300]}") from exc
        if not isinstance(content, str) or not content.strip():
            raise DescriberError(f"{self.url} returned an empty description")
        return _SPACE.sub(" ", content).strip()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
