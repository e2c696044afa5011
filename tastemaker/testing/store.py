"""The ``Store`` conformance suite, and a throwaway PostgreSQL server for running it.

Use the suite as a pytest mixin; a backend's whole test is a few lines::

    class TestSQLiteStore(StoreConformance):
        def make_store(self, location):
            return SQLiteStore(location / "store.db")

``make_store(location)`` gets a fresh empty directory per test and must return a store over
the same data when called again with the same ``location`` (the suite reopens stores). Beyond
the :class:`~tastemaker.protocols.Store` protocol, the suite checks the extras every SQL
store has (``history`` limits, ``events_since``, ``get_items``, ``list_items``,
``items_created_since``, ``assign``/``assignment``, ``variant_stats``, ``to_dataset``).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tastemaker.protocols import Event, Item, Store
from tastemaker.store.base import SQLStore, StoreError

#: Latin with diacritics, CJK, emoji (astral plane), right-to-left, combining accent, symbols.
UNICODE = [
    "Bj\u00f6rk",
    "\u6771\u4eac\u7269\u8a9e",
    "\U0001f3b8 rock \U0001f918",
    "\u05e9\u05dc\u05d5\u05dd",
    "e\u0301t\u00e9",
    "\u00df\u2126",
]


class StoreConformance:
    """Generic behaviour every SQL store must have (see the module docstring)."""

    def make_store(self, location: Path) -> SQLStore:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLStore]:
        store = self.make_store(tmp_path)
        yield store
        store.close()

    # ------------------------------------------------------------------ events
    def test_is_a_store(self, store: SQLStore) -> None:
        assert isinstance(store, Store)

    def test_event_round_trip(self, store: SQLStore) -> None:
        events = [
            Event("u1", "i1", "click", 2.5, 1_700_000_000.25, {"page": "home", "slot": 3, "tags": ["a", None, True]}),
            Event("u1", "i2"),
            Event("u1", "i3", "rating", -1.0, 5.0, {"nested": {"deep": [1.5, {"x": "y"}]}}),
        ]
        assert store.append_events(events) == 3
        assert store.history("u1") == events
        assert store.count_events() == 3

    def test_empty_append_writes_nothing(self, store: SQLStore) -> None:
        assert store.append_events([]) == 0
        assert store.count_events() == 0
        assert store.history("nobody") == []

    def test_history_is_oldest_first_and_limit_keeps_the_most_recent(self, store: SQLStore) -> None:
        # Client timestamps out of order: history follows append order, not timestamps.
        timestamps = [50.0, 10.0, 40.0, 20.0, 30.0, 0.0, 60.0, 5.0, 70.0, 1.0]
        for k, ts in enumerate(timestamps):
            store.append_events([Event("u1", f"i{k}", timestamp=ts), Event("u2", f"other{k}")])
        items = [e.item_id for e in store.history("u1")]
        assert items == [f"i{k}" for k in range(10)]
        assert [e.item_id for e in store.history("u1", limit=3)] == ["i7", "i8", "i9"]
        assert [e.timestamp for e in store.history("u1", limit=3)] == [5.0, 70.0, 1.0]
        assert store.history("u1", limit=0) == []
        assert len(store.history("u1", limit=1000)) == 10
        with pytest.raises(ValueError, match="limit"):
            store.history("u1", limit=-1)

    def test_events_since_tails_the_log(self, store: SQLStore) -> None:
        store.append_events([Event("u1", f"i{k}") for k in range(5)])
        first = store.events_since(0)
        ids = [event_id for event_id, _ in first]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert [e.item_id for _, e in first] == [f"i{k}" for k in range(5)]
        store.append_events([Event("u2", "j0"), Event("u2", "j1")])
        later = store.events_since(ids[-1])
        assert [e.item_id for _, e in later] == ["j0", "j1"] and later[0][0] > ids[-1]
        assert [e.item_id for _, e in store.events_since(0, limit=2)] == ["i0", "i1"]
        assert store.events_since(later[-1][0]) == []
        assert store.max_event_id() == later[-1][0]
        assert store.history_with_ids("u2") == later

    def test_item_counts(self, store: SQLStore) -> None:
        assert store.max_event_id() == 0 and store.item_counts() == {}
        store.append_events([Event("a", "i1", "click"), Event("b", "i1", "view"), Event("a", "i2", "click")])
        assert store.item_counts() == {"i1": 2, "i2": 1}
        assert store.item_counts(event_type="view") == {"i1": 1}

    def test_event_counts(self, store: SQLStore) -> None:
        store.append_events([Event("a", "i1", "click"), Event("a", "i2", "view"), Event("b", "i1", "click")])
        assert store.event_count_by_user() == {"a": 2, "b": 1}
        assert store.event_count_by_user(event_type="click") == {"a": 1, "b": 1}
        assert store.event_count_by_user(["b", "zzz"]) == {"b": 1, "zzz": 0}
        assert store.event_count_by_user(["a"], event_type="view") == {"a": 1}

    def test_bulk_events(self, store: SQLStore) -> None:
        rng = random.Random(3)
        events = [
            Event(f"u{rng.randrange(300)}", f"i{rng.randrange(2000)}", rng.choice(["click", "view"]), k, float(k))
            for k in range(20_000)
        ]
        assert store.append_events(events) == 20_000
        assert store.count_events() == 20_000
        expected = [e for e in events if e.user_id == "u7"]
        assert store.history("u7", limit=10_000) == expected
        assert store.history("u7", limit=5) == expected[-5:]
        assert sum(store.event_count_by_user().values()) == 20_000

    def test_unicode_round_trips(self, store: SQLStore) -> None:
        events = [Event(text, UNICODE[-1 - k], text, 1.0, 0.0, {text: [text]}) for k, text in enumerate(UNICODE)]
        store.append_events(events)
        for event in events:
            assert store.history(event.user_id) == [event]
        items = [Item(text, title=text, text=text * 3, categories=(text,), attributes={text: text}) for text in UNICODE]
        store.upsert_items(items)
        assert store.get_items(UNICODE) == items

    # ------------------------------------------------------------------ catalog
    def test_item_round_trip(self, store: SQLStore) -> None:
        item = Item(
            "i1",
            title="Kind of Blue",
            text="Modal jazz, 1959.",
            categories=("jazz", "modal"),
            attributes={"year": 1959, "price": 9.99, "artists": ["Davis", "Coltrane"], "meta": {"label": "Columbia"}},
            available=True,
            created_at=1_600_000_000.5,
        )
        assert store.upsert_items([item]) == 1
        assert store.get_item("i1") == item
        assert store.get_item("missing") is None

    def test_upsert_replaces_existing_items(self, store: SQLStore) -> None:
        store.upsert_items([Item("i1", "Old", categories=("a",), attributes={"k": {"x": [1, 2]}}, created_at=100.0)])
        store.upsert_items([Item("i2", "Other")])
        updated = Item("i1", "New", "text", ("b", "c"), {"k": {"x": [3]}, "\u00e9": None}, False, 200.0)
        assert store.upsert_items(iter([updated])) == 1
        assert store.get_item("i1") == updated
        assert store.count_items() == 2
        # created_at 0.0 means "unknown": the stored creation time stays.
        store.upsert_items([Item("i1", "Newer")])
        assert store.get_item("i1") == Item("i1", "Newer", created_at=200.0)
        # a repeated id within one call: the last one wins
        store.upsert_items([Item("i3", "first"), Item("i3", "second")])
        assert store.get_item("i3") == Item("i3", "second")

    def test_get_items_keeps_order_and_marks_missing(self, store: SQLStore) -> None:
        store.upsert_items([Item(f"i{k}", f"t{k}") for k in range(1200)])
        ids = ["i1100", "nope", "i3", "i3", "i0"]
        assert [None if i is None else i.title for i in store.get_items(ids)] == ["t1100", None, "t3", "t3", "t0"]
        assert store.get_items([]) == []
        every = [f"i{k}" for k in range(1200)]
        assert [i.item_id for i in store.get_items(every) if i] == every

    def test_delete_item(self, store: SQLStore) -> None:
        store.upsert_items([Item("i1"), Item("i2")])
        store.append_events([Event("u", "i1")])
        assert store.delete_item("i1") is True
        assert store.delete_item("i1") is False
        assert store.get_item("i1") is None and store.get_item("i2") is not None
        assert store.history("u") == [Event("u", "i1")]  # events are history: they stay

    def test_availability(self, store: SQLStore) -> None:
        store.upsert_items([Item("a"), Item("b"), Item("c", available=False)])
        assert [i.item_id for i in store.list_items()] == ["a", "b"]
        assert store.set_available("a", False) is True
        assert store.set_available("c", True) is True
        assert store.set_available("missing", True) is False
        assert [i.item_id for i in store.list_items()] == ["b", "c"]
        assert [i.item_id for i in store.list_items(available_only=False)] == ["a", "b", "c"]
        assert store.get_item("a") == Item("a", available=False)
        assert store.count_items() == 3 and store.count_items(available_only=True) == 2

    def test_list_items_pages(self, store: SQLStore) -> None:
        store.upsert_items([Item(f"i{k:02d}", available=k % 5 != 0) for k in range(25)])
        pages = [store.list_items(available_only=False, limit=10, offset=o) for o in (0, 10, 20)]
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [i.item_id for p in pages for i in p] == [f"i{k:02d}" for k in range(25)]
        assert len(store.list_items(limit=None)) == 20
        assert [i.item_id for i in store.list_items(limit=2, offset=3)] == ["i04", "i06"]

    def test_items_created_since(self, store: SQLStore) -> None:
        store.upsert_items(
            [
                Item("old", created_at=10.0),
                Item("new", created_at=30.0),
                Item("mid", created_at=20.0),
                Item("hidden", created_at=40.0, available=False),
                Item("unknown"),
            ]
        )
        assert [i.item_id for i in store.items_created_since(20.0)] == ["new", "mid"]
        assert [i.item_id for i in store.items_created_since(20.0, available_only=False)] == ["hidden", "new", "mid"]
        assert [i.item_id for i in store.items_created_since(0.0, limit=1)] == ["new"]

    def test_users(self, store: SQLStore) -> None:
        assert store.upsert_users([("u1", {"age": 30, "langs": ["en", "fr"]}), ("u2", {})]) == 2
        assert store.get_user("u1") == {"age": 30, "langs": ["en", "fr"]}
        store.upsert_users([("u1", {"age": 31})])
        assert store.get_user("u1") == {"age": 31}
        assert store.get_user("u2") == {} and store.get_user("u3") is None

    # ------------------------------------------------------------------ concurrency
    def test_concurrent_appends_lose_nothing(self, store: SQLStore) -> None:
        threads, calls = 8, 150
        errors: list[BaseException] = []
        start = threading.Barrier(threads + 1)

        def writer(t: int) -> None:
            try:
                start.wait()
                for c in range(calls):
                    size = 1 + (c % 3)
                    store.append_events([Event(f"t{t}", f"{c}.{k}", context={"t": t, "c": c}) for k in range(size)])
                    if c and c % 25 == 0:  # a writer sees its own writes at once
                        assert store.history(f"t{t}", limit=1)[0].item_id == f"{c}.{size - 1}"
            except BaseException as exc:
                errors.append(exc)

        def reader() -> None:
            try:
                start.wait()
                for _ in range(50):
                    store.count_events()
                    store.history("t0", limit=10)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
        workers.append(threading.Thread(target=reader))
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors, errors
        per_thread = sum(1 + (c % 3) for c in range(calls))
        assert store.count_events() == threads * per_thread
        assert store.event_count_by_user() == {f"t{t}": per_thread for t in range(threads)}
        logged = store.events_since(0)
        ids = [event_id for event_id, _ in logged]
        assert ids == sorted(set(ids))
        keys = Counter((e.user_id, e.item_id) for _, e in logged)
        assert len(keys) == threads * per_thread and max(keys.values()) == 1
        for t in range(threads):  # each thread's events in its own order
            assert [e.item_id for e in store.history(f"t{t}", limit=10_000)] == [
                f"{c}.{k}" for c in range(calls) for k in range(1 + (c % 3))
            ]

    def test_concurrent_assign_is_stable(self, store: SQLStore) -> None:
        threads, users = 8, 40
        results: list[dict[str, str]] = [{} for _ in range(threads)]
        errors: list[BaseException] = []
        start = threading.Barrier(threads)

        def assigner(t: int) -> None:
            try:
                start.wait()
                for u in range(users):
                    results[t][f"u{u}"] = store.assign("exp", f"u{u}", f"v{t}")
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=assigner, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors, errors
        for u in range(users):
            stored = store.assignment("exp", f"u{u}")
            assert stored is not None
            assert {results[t][f"u{u}"] for t in range(threads)} == {stored}

    # ------------------------------------------------------------------ experiments
    def test_assignment_is_first_come(self, store: SQLStore) -> None:
        assert store.assignment("exp", "u1") is None
        assert store.assign("exp", "u1", "A") == "A"
        assert store.assign("exp", "u1", "B") == "A"
        assert store.assignment("exp", "u1") == "A"
        assert store.assign("other", "u1", "B") == "B"
        assert store.assignment("exp", "u2") is None

    def test_named_states_round_trip_and_replace(self, store: SQLStore) -> None:
        assert store.get_state("policy:v1") is None
        store.put_state("policy:v1", '{"a": 1}')
        store.put_state("policy:v2", "Zürich ✓")
        store.put_state("policy:v1", '{"a": 2}')
        assert store.get_state("policy:v1") == '{"a": 2}'
        assert store.get_state("policy:v2") == "Zürich ✓"
        with pytest.raises(ValueError, match="name"):
            store.put_state("", "x")
        with pytest.raises(ValueError, match="must be text"):
            store.put_state("n", 3)  # type: ignore[arg-type]

    def test_variant_stats_known_answer(self, store: SQLStore) -> None:
        for user, variant in [("a1", "A"), ("a2", "A"), ("b1", "B"), ("c1", "C")]:
            store.assign("exp", user, variant)
        store.assign("other", "x", "A")  # another experiment: not counted

        def events(user: str, kind: str, n: int) -> list[Event]:
            return [Event(user, f"i{k}", kind) for k in range(n)]

        store.append_events(events("a1", "impression", 4) + events("a1", "click", 2) + events("a1", "purchase", 1))
        store.append_events(events("a2", "impression", 2) + events("a2", "view", 7))
        store.append_events(events("b1", "impression", 3))
        store.append_events(events("x", "impression", 10) + events("x", "click", 5) + events("nobody", "click", 3))
        stats = store.variant_stats("exp")
        keys = ("users", "impressions", "clicks", "conversions", "ctr", "conversion_rate")
        assert stats == {
            "A": dict(zip(keys, (2, 6, 2, 1, 2 / 6, 0.5), strict=True)),
            "B": dict(zip(keys, (1, 3, 0, 0, 0.0, 0.0), strict=True)),
            "C": dict(zip(keys, (1, 0, 0, 0, 0.0, 0.0), strict=True)),
        }
        custom = store.variant_stats("exp", exposure_type="view", click_type="impression", conversion_type="click")
        assert custom["A"]["impressions"] == 7 and custom["A"]["clicks"] == 6 and custom["A"]["conversions"] == 2
        assert store.variant_stats("no-such-experiment") == {}

    # ------------------------------------------------------------------ retraining
    def test_to_dataset_equals_what_was_written(self, store: SQLStore) -> None:
        events = [
            Event("u1", "i1", "click", 1.0, 100.0),
            Event("u2", "i2", "rating", 4.5, 50.0),
            Event("u1", "i3", "view", 1.0, 200.0),
            Event("u1", "i1", "click", 1.0, 300.0),
            Event("u3", "ghost", "view", 2.0, 10.0),  # an item missing from the catalog
        ]
        store.append_events(events)
        store.upsert_items(
            [
                Item("i1", "One", categories=("a",), attributes={"brand": "x"}, created_at=5.0),
                Item("i2", "Two", available=False),
                Item("i3", "Three", categories=("a", "b"), attributes={"title": "clash"}),
                Item("cold", "Cold"),
            ]
        )
        store.upsert_users([("u1", {"country": "fr"}), ("u9", {"country": "de"})])
        data = store.to_dataset(name="snapshot")
        assert data.name == "snapshot" and data.n_interactions == len(events)
        assert data.extras["last_event_id"] == store.max_event_id()
        inter = data.interactions
        written = Counter(
            zip(
                data.users.decode(inter["user"].to_numpy()),
                data.items.decode(inter["item"].to_numpy()),
                inter["timestamp"].tolist(),
                inter["event_type"].tolist(),
                inter["value"].tolist(),
                strict=True,
            )
        )
        assert written == Counter((e.user_id, e.item_id, int(e.timestamp), e.event_type, e.value) for e in events)
        assert set(data.items.ids) == {"i1", "i2", "i3", "cold", "ghost"}
        assert set(data.users.ids) == {"u1", "u2", "u3", "u9"}
        catalog = data.catalog.set_index("item_id")
        assert catalog.loc["i1", "title"] == "One" and catalog.loc["ghost", "title"] == ""
        assert list(catalog.loc["i3", "categories"]) == ["a", "b"]
        assert catalog.loc["i1", "created_at"] == 5.0 and math.isnan(catalog.loc["i2", "created_at"])
        assert not bool(catalog.loc["i2", "available"]) and bool(catalog.loc["cold", "available"])
        assert catalog.loc["i1", "brand"] == "x" and catalog.loc["i3", "attribute_title"] == "clash"
        assert data.user_features is not None
        assert data.user_features.set_index("user_id").loc["u9", "country"] == "de"

    def test_to_dataset_of_an_empty_store(self, store: SQLStore) -> None:
        data = store.to_dataset()
        assert data.n_interactions == 0 and data.n_items == 0 and data.extras["last_event_id"] == 0

    def test_to_dataset_until_an_event_id(self, store: SQLStore) -> None:
        store.append_events([Event("u", f"i{k}") for k in range(5)])
        ids = [event_id for event_id, _ in store.events_since(0)]
        data = store.to_dataset(until_id=ids[2])
        assert data.n_interactions == 3 and data.extras["last_event_id"] == ids[2]
        assert sorted(data.items.decode(data.interactions["item"].to_numpy())) == ["i0", "i1", "i2"]

    def test_to_dataset_never_trains_on_exposure_and_filters_types(self, store: SQLStore) -> None:
        store.append_events([
            Event("u1", "shown", "impression", 1.0, 1.0, {"request_id": "r"}),
            Event("u1", "clicked", "click", 1.0, 2.0),
            Event("u1", "bought", "purchase", 1.0, 3.0),
            Event("u2", "shown", "impression", 1.0, 4.0),
        ])
        def trained(data: object) -> set[tuple[str, str]]:
            inter = data.interactions  # type: ignore[attr-defined]
            users = data.users.decode(inter["user"].to_numpy())  # type: ignore[attr-defined]
            items = data.items.decode(inter["item"].to_numpy())  # type: ignore[attr-defined]
            return set(zip(users, items, strict=True))

        default = store.to_dataset()
        assert trained(default) == {("u1", "clicked"), ("u1", "bought")}
        assert default.extras["last_event_id"] == store.max_event_id()  # impressions were read, not trained on
        assert trained(store.to_dataset(event_types=["purchase"])) == {("u1", "bought")}
        assert trained(store.to_dataset(event_types=[])) == set()
        assert ("u1", "shown") in trained(store.to_dataset(exclude_types=()))

    # ------------------------------------------------------------------ serving history, idempotency, privacy
    def test_recent_items_are_distinct_recent_and_skip_exposure(self, store: SQLStore) -> None:
        store.append_events([Event("u", "1200", "click"), Event("u", "589", "click")])
        store.append_events([Event("u", "1200", "click")] * 300 + [Event("u", f"shown{k}", "impression") for k in range(300)])
        store.append_events([Event("other", "x", "click")])
        recent = store.recent_items("u", limit=2)
        assert [e.item_id for _, e in recent] == ["589", "1200"]  # ordered by their last use
        assert recent[-1][0] > recent[0][0]
        assert [e.item_id for _, e in store.recent_items("u", limit=1)] == ["1200"]
        everything = store.recent_items("u", limit=1000, exclude_types=())
        assert len(everything) == 302 and everything[-1][1].item_id == "shown299"
        assert store.recent_items("nobody") == [] and store.recent_items("u", limit=0) == []

    def test_a_retried_event_id_is_a_no_op(self, store: SQLStore) -> None:
        first = [Event("u", "a", "click", event_id="e1"), Event("u", "b", "click", event_id="e2"), Event("u", "c")]
        assert store.append_events(first) == 3
        assert store.append_events(first) == 1  # e1 and e2 are stored already; "c" has no id
        assert store.append_events([Event("u", "z", event_id="e1")]) == 0  # the id decides, not the content
        assert store.append_events([Event("v", "a", event_id="e1")]) == 1  # ids are per user
        assert [(e.item_id, e.event_id) for e in store.history("u")] == [("a", "e1"), ("b", "e2"), ("c", None), ("c", None)]
        many = [Event("w", f"i{k}", event_id=f"w{k % 50}") for k in range(200)]  # repeats inside one call
        assert store.append_events(many) == 50 and store.append_events(many) == 0
        with pytest.raises(ValueError, match=r"events\[0\]\.event_id"):
            store.append_events([Event("u", "a", event_id="")])

    def test_history_pages_back_with_before_id(self, store: SQLStore) -> None:
        store.append_events([Event("u", f"i{k}") for k in range(7)])
        page = store.history_with_ids("u", limit=3)
        assert [e.item_id for _, e in page] == ["i4", "i5", "i6"]
        older = store.history_with_ids("u", limit=3, before_id=page[0][0])
        assert [e.item_id for _, e in older] == ["i1", "i2", "i3"]
        assert [e.item_id for _, e in store.history_with_ids("u", limit=3, before_id=older[0][0])] == ["i0"]

    def test_delete_user_forgets_everything_about_them(self, store: SQLStore) -> None:
        store.append_events([Event("u", "a"), Event("u", "b"), Event("keep", "a")])
        store.upsert_users([("u", {"age": 3}), ("keep", {})])
        store.assign("exp", "u", "A")
        assert store.delete_user("u") == {"events": 2, "users": 1, "assignments": 1}
        assert store.history("u") == [] and store.get_user("u") is None and store.assignment("exp", "u") is None
        assert store.history("keep") == [Event("keep", "a")] and store.get_user("keep") == {}
        assert "u" not in set(store.to_dataset().users.ids)
        assert store.delete_user("u") == {"events": 0, "users": 0, "assignments": 0}

    # ------------------------------------------------------------------ bad input
    @pytest.mark.parametrize(
        ("event", "field"),
        [
            (Event("", "i"), "user_id"),
            (Event("u", ""), "item_id"),
            (Event("u", "i", ""), "event_type"),
            (Event("u", "i", value=math.nan), "value"),
            (Event("u", "i", value=math.inf), "value"),
            (Event("u", "i", value="high"), "value"),  # type: ignore[arg-type]
            (Event("u", "i", timestamp=math.nan), "timestamp"),
            (Event("u", "i", timestamp=-1.0), "timestamp"),
            (Event("u", "i", context={"when": object()}), "context"),
            (Event("u", "i", context={"x": math.nan}), "context"),
            (Event("u", "i", context={1: "x"}), "context"),  # type: ignore[dict-item]
            (Event("u", "i", context=["not", "a", "dict"]), "context"),  # type: ignore[arg-type]
            (Event("u\x00", "i"), "user_id"),
            (Event("u", "i\ud800"), "item_id"),
        ],
    )
    def test_bad_event_is_refused_and_nothing_is_written(self, store: SQLStore, event: Event, field: str) -> None:
        with pytest.raises(ValueError, match=rf"events\[1\]\.{field}"):
            store.append_events([Event("u", "ok"), event])
        assert store.count_events() == 0

    @pytest.mark.parametrize(
        ("item", "field"),
        [
            (Item(""), "item_id"),
            (Item("i", attributes={"f": {1, 2}}), "attributes"),
            (Item("i", categories="jazz"), "categories"),  # type: ignore[arg-type]
            (Item("i", categories=("a", 3)), "categories"),  # type: ignore[arg-type]
            (Item("i", created_at=math.nan), "created_at"),
            (Item("i", available="yes"), "available"),  # type: ignore[arg-type]
            (Item("i", title=None), "title"),  # type: ignore[arg-type]
        ],
    )
    def test_bad_item_is_refused(self, store: SQLStore, item: Item, field: str) -> None:
        with pytest.raises(ValueError, match=rf"items\[1\]\.{field}"):
            store.upsert_items([Item("ok"), item])
        assert store.count_items() == 0

    def test_bad_arguments(self, store: SQLStore) -> None:
        with pytest.raises(ValueError, match="user_id"):
            store.history("")
        with pytest.raises(ValueError, match=r"item_ids\[0\]"):
            store.get_items([""])
        with pytest.raises(ValueError, match=r"users\[0\]\.attributes"):
            store.upsert_users([("u", {"x": object()})])
        with pytest.raises(ValueError, match="variant"):
            store.assign("exp", "u", "")
        with pytest.raises(TypeError):
            store.append_events(Event("u", "i"))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ durability and lifecycle
    def test_committed_before_return(self, store: SQLStore, tmp_path: Path) -> None:
        other = self.make_store(tmp_path)  # a second, independent connection to the same data
        try:
            for k in range(20):
                store.append_events([Event("u", f"i{k}")])
                assert other.count_events() == k + 1
        finally:
            other.close()

    def test_reopen_keeps_everything(self, store: SQLStore, tmp_path: Path) -> None:
        store.append_events([Event("u", "i", "click", 2.0, 3.0, {"k": "v"})])
        store.upsert_items([Item("i", "T")])
        store.assign("exp", "u", "A")
        store.close()
        reopened = self.make_store(tmp_path)
        try:
            assert reopened.history("u") == [Event("u", "i", "click", 2.0, 3.0, {"k": "v"})]
            assert reopened.get_item("i") == Item("i", "T")
            assert reopened.assignment("exp", "u") == "A"
            assert reopened.schema_version() >= 1
        finally:
            reopened.close()

    def test_closed_store_refuses_calls(self, store: SQLStore) -> None:
        store.close()
        store.close()  # idempotent
        with pytest.raises(StoreError, match="closed"):
            store.append_events([Event("u", "i")])


# ---------------------------------------------------------------------- a throwaway PostgreSQL
class PostgresUnavailable(RuntimeError):
    """A PostgreSQL server cannot be started here; the message says why and what to install."""


INSTALL_HINT = "install the server with `apt-get install postgresql` (or `.ci/postgres.sh`)"


def _postgres_bin() -> Path:
    if os.environ.get("TASTEMAKER_PG_BIN"):
        return Path(os.environ["TASTEMAKER_PG_BIN"])
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent

    def version(initdb: Path) -> int:
        name = initdb.parent.parent.name
        return int(name) if name.isdigit() else 0

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if not candidates:
        raise PostgresUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")
    return candidates[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def temporary_postgres(fsync: bool = False, timeout: float = 30.0) -> Iterator[str]:
    """Start a fresh PostgreSQL server on a free loopback port, yield a DSN for an empty
    database on it, and stop and delete it afterwards (about a second with ``initdb``).

    As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
    ``fsync=False`` (the default) suits tests: commits then skip the disk flush that only
    matters for power loss. Raises :class:`PostgresUnavailable` when it cannot start."""
    try:
        import psycopg
    except ImportError:
        raise PostgresUnavailable("psycopg is not installed: pip install 'tastemaker[postgres]'") from None
    bin_dir = _postgres_bin()
    pg_ctl = bin_dir / "pg_ctl"
    if not (bin_dir / "initdb").is_file() or not pg_ctl.is_file():
        raise PostgresUnavailable(f"initdb and pg_ctl are not in {bin_dir}: {INSTALL_HINT}")
    prefix: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        import pwd

        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                f"running as root and there is no 'postgres' user to run the server: {INSTALL_HINT}"
            ) from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresUnavailable("running as root, and `runuser` is missing to start the server as 'postgres'")
        prefix, owner = [runuser, "-u", "postgres", "--"], (entry.pw_uid, entry.pw_gid)
    root = Path(tempfile.mkdtemp(prefix="tastemaker-pg-"))
    data, log = root / "data", root / "server.log"
    started = False
    try:
        if owner:
            os.chown(root, *owner)

        def run(*args: str) -> None:
            try:
                result = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise PostgresUnavailable(f"`{Path(args[0]).name}` could not run: {exc}") from None
            if result.returncode != 0:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise PostgresUnavailable(f"`{Path(args[0]).name}` failed: {result.stderr.strip()[-2000:]}\n{tail}")

        initdb = ("-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        run(str(bin_dir / "initdb"), "-D", str(data), *initdb)
        for attempt in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=300"
            options += f" -c fsync={'on' if fsync else 'off'}"
            try:
                run(str(pg_ctl), "-D", str(data), "-l", str(log), "-w", "-t", str(int(timeout)), "-o", options, "start")
                started = True
                break
            except PostgresUnavailable:
                if attempt == 2:
                    raise
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE tastemaker")
        yield f"postgresql://postgres@127.0.0.1:{port}/tastemaker"
    finally:
        if started:
            stop = [*prefix, str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"]
            subprocess.run(stop, capture_output=True, timeout=timeout)
        shutil.rmtree(root, ignore_errors=True)
