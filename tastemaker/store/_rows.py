"""Checking and encoding the values a store writes, and decoding the rows it reads back.

Both SQL backends share these, so that the same bad input fails the same way in each: a
``ValueError`` whose message starts with the field at fault (``events[3].value: ...``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tastemaker.protocols import Event, Item

# Row layouts (the column order of the INSERTs and SELECTs in base.py).
#: user_id, item_id, event_type, value, timestamp, context (JSON), client event id (or None)
EventRow = tuple[str, str, str, float, float, str, str | None]
#: item_id, title, text, categories (JSON), attributes (JSON), available, created_at, updated_at
ItemRow = tuple[str, str, str, str, str, bool, float, float]


def check_text(value: object, field: str, *, required: bool = False) -> str:
    """A str that both backends can store: no NUL character (PostgreSQL refuses it) and no
    lone surrogate (not UTF-8). ``required`` also refuses the empty string."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected a str, got {type(value).__name__} {value!r:.80}")
    if required and not value:
        raise ValueError(f"{field}: must not be empty")
    if "\x00" in value:
        raise ValueError(f"{field}: contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{field}: not valid Unicode text ({exc.reason})") from None
    return value


def check_number(value: object, field: str, *, non_negative: bool = False) -> float:
    """A finite float (bools and ints are accepted as numbers)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{field}: {value!r:.80} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{field}: {value!r} is not a finite number")
    if non_negative and number < 0:
        raise ValueError(f"{field}: {value!r} is negative")
    return number


def encode_json(value: object, field: str, *, kind: type) -> str:
    """``value`` (a ``kind``: dict or list) as compact JSON text.

    Refuses what JSON cannot hold faithfully: NaN and infinities, objects json cannot encode,
    and the NUL character (PostgreSQL's JSONB refuses ``\\u0000``). Dict keys must be str,
    as JSON turns any other key into a string and the value would not read back equal."""
    if kind is dict and not isinstance(value, Mapping):
        raise ValueError(f"{field}: expected a dict, got {type(value).__name__}")
    if kind is list and (isinstance(value, str | bytes) or not isinstance(value, Sequence)):
        raise ValueError(f"{field}: expected a list of str, got {type(value).__name__}")
    if not value:
        return "{}" if kind is dict else "[]"
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: not JSON-serialisable: {exc}") from None
    if "\\u0000" in text:
        raise ValueError(f"{field}: contains a NUL character")
    _check_keys(value, field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{field}: not valid Unicode text ({exc.reason})") from None
    return text


def _check_keys(value: object, field: str) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{field}: key {key!r} is not a str (JSON keys are strings)")
            _check_keys(inner, field)
    elif isinstance(value, list | tuple):
        for inner in value:
            _check_keys(inner, field)


def decode_json(value: Any) -> Any:
    """JSON text from either backend (PostgreSQL's JSONB is read as text too)."""
    if value == "{}":
        return {}  # most contexts are empty: skip the parser on the request path
    return json.loads(value) if isinstance(value, str | bytes) else value


# ---------------------------------------------------------------------- events
def event_rows(events: Sequence[Event]) -> list[EventRow]:
    """Checked rows for ``events``; a ``ValueError`` names the first bad field."""
    if isinstance(events, Event) or not isinstance(events, Sequence):
        raise TypeError(f"expected a sequence of Event, got {type(events).__name__}")
    rows: list[EventRow] = []
    append, isfinite = rows.append, math.isfinite
    for i, event in enumerate(events):
        if not isinstance(event, Event):
            raise TypeError(f"events[{i}]: expected an Event, got {type(event).__name__}")
        user_id, item_id, event_type = event.user_id, event.item_id, event.event_type
        value, timestamp, context, client_id = event.value, event.timestamp, event.context, event.event_id
        # Fast path for the common case (short ASCII ids, float numbers, empty context);
        # anything else goes through the full checks, which name the field at fault.
        if not (_plain(user_id) and _plain(item_id) and _plain(event_type)):
            where = f"events[{i}]"
            user_id = check_text(user_id, f"{where}.user_id", required=True)
            item_id = check_text(item_id, f"{where}.item_id", required=True)
            event_type = check_text(event_type, f"{where}.event_type", required=True)
        if not (type(value) is float and isfinite(value)):
            value = check_number(value, f"events[{i}].value")
        if not (type(timestamp) is float and isfinite(timestamp) and timestamp >= 0):
            timestamp = check_number(timestamp, f"events[{i}].timestamp", non_negative=True)
        if type(context) is dict and not context:
            encoded = "{}"
        else:
            encoded = encode_json(context, f"events[{i}].context", kind=dict)
        if client_id is not None:
            client_id = check_text(client_id, f"events[{i}].event_id", required=True)
        append((user_id, item_id, event_type, value, timestamp, encoded, client_id))
    return rows


def _plain(value: object) -> bool:
    return type(value) is str and value.isascii() and "\x00" not in value and value != ""


EVENT_COLUMNS = "user_id, item_id, event_type, value, timestamp, context, client_id"


def event_from_row(row: Sequence[Any]) -> Event:
    """An ``Event`` from a row in ``EVENT_COLUMNS`` order."""
    user_id, item_id, event_type, value, timestamp, context, client_id = row
    return Event(user_id, item_id, event_type, float(value), float(timestamp), decode_json(context), client_id)


# ---------------------------------------------------------------------- items and users
def item_rows(items: Sequence[Item], now: float) -> list[ItemRow]:
    rows: list[ItemRow] = []
    for i, item in enumerate(items):
        if not isinstance(item, Item):
            raise TypeError(f"items[{i}]: expected an Item, got {type(item).__name__}")
        where = f"items[{i}]"
        categories = item.categories
        if isinstance(categories, str | bytes) or not isinstance(categories, Sequence):
            raise ValueError(f"{where}.categories: expected a tuple of str, got {type(categories).__name__}")
        for j, category in enumerate(categories):
            check_text(category, f"{where}.categories[{j}]")
        if not isinstance(item.available, bool):
            raise ValueError(f"{where}.available: expected a bool, got {type(item.available).__name__}")
        rows.append(
            (
                check_text(item.item_id, f"{where}.item_id", required=True),
                check_text(item.title, f"{where}.title"),
                check_text(item.text, f"{where}.text"),
                encode_json(list(categories), f"{where}.categories", kind=list),
                encode_json(item.attributes, f"{where}.attributes", kind=dict),
                item.available,
                check_number(item.created_at, f"{where}.created_at", non_negative=True),
                now,
            )
        )
    return rows


ITEM_COLUMNS = "item_id, title, text, categories, attributes, available, created_at"


def item_from_row(row: Sequence[Any]) -> Item:
    """An ``Item`` from a row in ``ITEM_COLUMNS`` order."""
    item_id, title, text, categories, attributes, available, created_at = row
    return Item(
        item_id,
        title,
        text,
        tuple(decode_json(categories)),
        decode_json(attributes),
        bool(available),
        float(created_at),
    )


def user_rows(users: Sequence[tuple[str, Mapping[str, Any]]], now: float) -> list[tuple[str, str, float]]:
    rows: list[tuple[str, str, float]] = []
    for i, entry in enumerate(users):
        if not isinstance(entry, tuple | list) or len(entry) != 2:
            raise TypeError(f"users[{i}]: expected a (user_id, attributes) pair, got {entry!r:.80}")
        user_id, attributes = entry
        rows.append(
            (
                check_text(user_id, f"users[{i}].user_id", required=True),
                encode_json(attributes, f"users[{i}].attributes", kind=dict),
                now,
            )
        )
    return rows


def check_ids(ids: Sequence[str], field: str) -> list[str]:
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise TypeError(f"{field}: expected a sequence of str, got {type(ids).__name__}")
    return [check_text(value, f"{field}[{i}]", required=True) for i, value in enumerate(ids)]


def check_limit(value: int | None, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{field}: expected a non-negative int, got {value!r}")
    return value
