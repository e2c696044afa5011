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
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from tastemaker.errors import TastemakerError

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
    (:func:`describe` of the row); the answer is ``choices[0].message.content``. The protocol,
    the retries (``retries`` more tries on connection errors, 429 and 5xx, with exponential
    backoff) and the URL rule are those of :class:`tastemaker.chat.llm.OpenAIChatModel`, which
    this wraps: ``base_url`` is the server root (``http://host:port``, which gets ``/v1``) or its
    API root. Needs ``httpx`` (extra ``llm``). Use it as a context manager, or call
    :meth:`close`, to release the connection pool.
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
        from tastemaker.chat.llm import OpenAIChatModel

        self.chat = OpenAIChatModel(base_url, model, api_key, temperature=temperature, max_tokens=max_tokens,
                                    timeout=timeout, retries=retries, backoff=0.5)
        self.url = self.chat.url
        self.model = model
        self.prompt = prompt
        self.max_fact_chars = max_fact_chars

    def _messages(self, item: Mapping[str, Any]) -> list[dict[str, str]]:
        facts = describe(item, max_chars=self.max_fact_chars)
        return [{"role": "system", "content": self.prompt}, {"role": "user", "content": f"Item: {facts}"}]

    def request_body(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The chat-completions request for ``item``."""
        return self.chat.request_body(self._messages(item))

    def __call__(self, item: Mapping[str, Any]) -> str:
        from tastemaker.chat.llm import ChatModelError

        try:
            content = self.chat.complete(self._messages(item))
        except ChatModelError as exc:
            raise DescriberError(str(exc)) from exc
        if not content.strip():
            raise DescriberError(f"{self.url} returned an empty description")
        return _SPACE.sub(" ", content).strip()

    def close(self) -> None:
        self.chat.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
