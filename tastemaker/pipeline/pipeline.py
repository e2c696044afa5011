"""The pipeline: sources -> ranker -> rerankers -> explorer, fitted, saved and served as one.

    pipeline = Pipeline(
        sources=[ModelSource(model="ease", params={"reg": 50}), ModelSource(model="content"), PopularitySource()],
        ranker=FusionRanker(),
        rerankers=[MMRReranker(weight=0.3)],
    ).fit(dataset)
    pipeline.recommend([Query(user="42")], n=10)     # ItemLists with sources and reasons
    pipeline.save("artifacts/pipe"); Pipeline.load("artifacts/pipe")

A request runs, per batch of queries:

1. the queries are resolved once against the pipeline's :class:`Context` (history, seen
   items, exclusions);
2. every source retrieves up to ``candidates`` items (its own ``k``), and the lists are merged
   into one :class:`ItemList` per query that keeps each source's score and rank;
3. the ranker orders them (``FusionRanker`` by default);
4. each reranker reorders/filters in turn; all but the last keep ``rerank_depth`` items, so the
   next one still has a pool to choose from;
5. the explorer picks the ``n`` shown (with a propensity each);
6. every shown item is explained by the stage that placed it: a reranker that moved it says
   so ("added for variety"), else the source that ranked it best ("because you watched X").

When no source has anything to go on (an unknown user without history), the built-in
popularity fallback answers, and its reasons say so ("popular in Drama (no history yet)").

**Training a learned ranker without leakage** (:meth:`Pipeline.fit`), in training cuts: at
cut c (c = 1 .. the ranker's ``cuts``, default 4) each user's last c training events are held
out as labels; the sources are fitted on the events before them and retrieve candidates for
those users; the ranker learns to put the held-out items first among them (LambdaRank over
the candidates, with each source's score and rank among the features). Early stopping holds
out whole users, across all cuts. Then every source is fitted again on all the events, and
that is what is served. No source ever saw the label events it is ranked on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

import tastemaker
from tastemaker.data.dataset import Dataset
from tastemaker.errors import ArtifactError, NotFittedError
from tastemaker.pipeline.base import Explorer, Ranker, Reranker, Source, Stage
from tastemaker.pipeline.context import Context, Resolved
from tastemaker.pipeline.explore import GreedyExplorer
from tastemaker.pipeline.ranker import FusionRanker
from tastemaker.pipeline.sources import PopularitySource
from tastemaker.types import FitOptions, ItemList, Query, Slate

FORMAT = "tastemaker-pipeline"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FALLBACK = "popular-fallback"


class Pipeline:
    """See the module docstring. ``candidates``: items each source retrieves per query;
    ``rerank_depth``: items kept between rerankers; ``ranker_users``: at most this many users
    (a seeded sample) label the learned ranker's training candidates."""

    def __init__(
        self,
        sources: Sequence[Source],
        ranker: Ranker | None = None,
        rerankers: Sequence[Reranker] = (),
        explorer: Explorer | None = None,
        *,
        candidates: int = 200,
        rerank_depth: int = 100,
        ranker_users: int = 20_000,
    ) -> None:
        if not sources:
            raise ValueError("a pipeline needs at least one source")
        names = [s.name for s in sources] + [r.name for r in rerankers]
        dupes = sorted({n for n in names if names.count(n) > 1} | ({FALLBACK} & set(names)))
        if dupes:
            raise ValueError(f"stage names must be unique in a pipeline (and not {FALLBACK!r}): {', '.join(dupes)}")
        self.sources = list(sources)
        self.ranker = ranker or FusionRanker()
        self.rerankers = list(rerankers)
        self.explorer = explorer or GreedyExplorer()
        self.candidates = int(candidates)
        self.rerank_depth = int(rerank_depth)
        self.ranker_users = int(ranker_users)
        self.fallback = PopularitySource(name=FALLBACK)

    def __repr__(self) -> str:
        return f"Pipeline({self.describe()})"

    def describe(self) -> str:
        """One line: each stage with its required config and what differs from the defaults,
        e.g. ``ease(model='ease', params={'reg': 200.0}) + popular -> fusion(weights={'ease': 2.0})``."""

        def one(stage: Stage) -> str:
            config = stage.config
            required = {k: getattr(config, k) for k, f in type(config).model_fields.items() if f.is_required()}
            defaults = type(config)(**required).model_dump()
            changed = {k: v for k, v in config.model_dump().items() if k in required or defaults.get(k) != v}
            return f"{stage.name}({', '.join(f'{k}={v!r}' for k, v in changed.items())})" if changed else stage.name

        text = " + ".join(one(s) for s in self.sources) + f" -> {one(self.ranker)}"
        return text + "".join(f" -> {one(r)}" for r in self.rerankers)

    @property
    def stages(self) -> list[tuple[str, Stage]]:
        """(role, stage) for every stage, in request order (the fallback last)."""
        return ([("source", s) for s in self.sources] + [("ranker", self.ranker)] + [("reranker", r) for r in self.rerankers]
                + [("explorer", self.explorer), ("fallback", self.fallback)])

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "context_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("the pipeline is not fitted: call fit() or load()")

    # The names evaluation reads off a model (tastemaker.eval.protocols), for the pipeline.
    @property
    def items_(self) -> Any:
        return self.context_.items

    @property
    def users_(self) -> Any:
        return self.context_.users

    @property
    def item_popularity_(self) -> np.ndarray:
        return self.context_.popularity

    @property
    def user_items_(self) -> Any:
        return self.context_.seen

    @property
    def name(self) -> str:
        """The sources joined by '+', e.g. ``"ease+content+popular"``."""
        return "+".join(s.name for s in self.sources)

    def clone(self) -> Pipeline:
        """The same stages and settings, unfitted."""
        return Pipeline(
            [type(s)(s.config, name=s.name) for s in self.sources],
            type(self.ranker)(self.ranker.config, name=self.ranker.name),
            [type(r)(r.config, name=r.name) for r in self.rerankers],
            type(self.explorer)(self.explorer.config, name=self.explorer.name),
            candidates=self.candidates, rerank_depth=self.rerank_depth, ranker_users=self.ranker_users,
        )

    # ------------------------------------------------------------------ fitting
    def fit(self, dataset: Dataset, options: FitOptions | None = None) -> Self:
        """Fit every stage on ``dataset`` (a learned ranker first on held-out labels; see the
        module docstring); returns self."""
        options = options or FitOptions()
        if self.ranker.learned:
            self._fit_ranker(dataset, options)
        self.context_ = Context.from_dataset(dataset)
        for role, stage in self.stages:
            if role != "ranker" or not self.ranker.learned:
                stage.fit(dataset, self.context_, options)
        if self.ranker.learned:
            self.ranker.bind(self.context_)
        for stage in (self.ranker, *self.rerankers, self.explorer):
            stage.use_sources(self.sources)
        return self

    def _fit_ranker(self, dataset: Dataset, options: FitOptions) -> None:
        """Train the learned ranker on labels no source saw. At cut c = 1 .. ``ranker.config.cuts``
        every user's last c training events are held out; a context and the sources are fitted
        on the events before them and retrieve candidates for (a seeded sample of at most
        ``ranker_users`` of) those users, labelled by the held-out events: the items the user
        chose next. The features of each cut come from that cut's own sources, so only
        one cut's sources are in memory at a time. With ``ranker.config.negatives``, each list
        keeps its chosen items and a seeded sample of that many others."""
        inter = dataset.interactions
        counts = inter.groupby("user", sort=False)["item"].transform("size").to_numpy()
        from_end = inter.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
        blocks: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        groups: list[np.ndarray] = []  # per list: (user code, cut)
        negatives = getattr(self.ranker.config, "negatives", None)
        sampler = np.random.default_rng(options.seed)
        for cut in range(1, int(getattr(self.ranker.config, "cuts", 1)) + 1):
            held = (from_end < cut) & (counts > cut)
            nexts = inter[held & (from_end == cut - 1)]  # per user, the first held-out event
            if not len(nexts):
                break
            if len(nexts) > self.ranker_users:
                nexts = nexts.sample(self.ranker_users, random_state=options.seed + cut - 1)
            prefix = dataset.with_interactions(inter[~held])
            context = Context.from_dataset(prefix)
            sources = [type(s)(s.config, name=s.name).fit(prefix, context, options) for s in self.sources]
            fallback = PopularitySource(name=FALLBACK).fit(prefix, context, options)
            users = prefix.users.decode(nexts["user"].to_numpy())
            # every held-out event is something the user chose after the cut: all are positives
            # (labelling the 2nd..c-th as negatives taught the ranker to bury what users pick)
            chosen = inter[held].groupby("user", sort=False)["item"].agg(list)
            targets = [np.asarray(chosen[u]) for u in nexts["user"].to_numpy()]
            for start in range(0, len(users), 256):
                resolved = context.resolve([Query(user=str(u)) for u in users[start : start + 256]])
                merged = self._candidates(resolved, sources, fallback)
                x = self.ranker.features_for(context, sources, resolved, merged)
                offset = 0
                for i, items in enumerate(merged):
                    label = np.isin(items.item_codes, targets[start + i]).astype(np.float32)
                    rows = np.arange(offset, offset + len(items))
                    offset += len(items)
                    if negatives is not None and (label == 0).sum() > negatives:
                        # a seeded sample of the non-chosen candidates bounds the training rows
                        keep = np.sort(np.concatenate([np.flatnonzero(label > 0),
                                                       sampler.choice(np.flatnonzero(label == 0), negatives, replace=False)]))
                        rows, label = rows[keep], label[keep]
                    blocks.append(x[rows])
                    labels.append(label)
            groups.append(np.column_stack([nexts["user"].to_numpy(), np.full(len(nexts), cut)]).astype(np.int64))
        if not labels:
            raise ValueError("no user has two training events: nothing to train the ranker on")
        self.ranker.fit_features(np.concatenate(blocks), labels, options, np.concatenate(groups))

    # ------------------------------------------------------------------ requests
    def recommend(self, queries: Query | Sequence[Query], n: int = 10, *, timings: dict[str, float] | None = None) -> list[ItemList]:
        """The explained top-``n`` for each query (see the module docstring); ``timings``, when
        given, receives the seconds each stage took (summed over the batch)."""
        return [slate.items for slate in self.slates(queries, n, timings=timings)]

    def slates(self, queries: Query | Sequence[Query], n: int = 10, *, timings: dict[str, float] | None = None) -> list[Slate]:
        """:meth:`recommend` with the explorer's propensity for each shown item."""
        self._check_fitted()
        if isinstance(queries, Query):
            queries = [queries]
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        clock = _Clock(timings)
        resolved = self.context_.resolve(queries)
        # one source, fused, nothing after it: its own top-n is the answer, so retrieving
        # `candidates` items would only cost time (a single-model service's every request)
        # (reciprocal-rank scores depend on the rank alone, so even the scores are the same)
        plain = (len(self.sources) == 1 and type(self.ranker) is FusionRanker and self.ranker.config.method == "rrf"
                 and not self.rerankers and type(self.explorer) is GreedyExplorer)
        merged = self._candidates(resolved, self.sources, self.fallback, clock, k=n if plain else None)
        with clock("ranker"):
            ranked = self.ranker.rank_resolved(resolved, merged)
        out = []
        for query, res, items in zip(queries, resolved, ranked, strict=True):
            for k, reranker in enumerate(self.rerankers):
                depth = n if k == len(self.rerankers) - 1 else max(n, self.rerank_depth)
                with clock(reranker.name):
                    items = reranker.rerank(query, items, depth)
            with clock("explorer"):
                slate = self.explorer.select(query, items, n)
            with clock("explain"):
                slate = Slate(self._explain(res, slate.items), slate.propensities, slate.policy, slate.policy_version)
            out.append(slate)
        return out

    def _candidates(
        self, resolved: Sequence[Resolved], sources: Sequence[Source], fallback: Source, clock: _Clock | None = None,
        k: int | None = None,
    ) -> list[ItemList]:
        clock = clock or _Clock(None)
        k = self.candidates if k is None else k
        lists: dict[str, list[ItemList]] = {}
        for source in sources:
            with clock(source.name):
                lists[source.name] = source.retrieve_resolved(resolved, k)
        merged = [merge_candidates({name: found[i] for name, found in lists.items()}) for i in range(len(resolved))]
        empty = [i for i, items in enumerate(merged) if not len(items)]
        if empty:  # nothing to go on: popularity, and the reasons will say so
            with clock(FALLBACK):
                backup = fallback.retrieve_resolved([resolved[i] for i in empty], k)
            for i, items in zip(empty, backup, strict=True):
                merged[i] = merge_candidates({FALLBACK: items})
        return merged

    def _explain(self, query: Resolved, items: ItemList) -> ItemList:
        """Reasons from the stage that placed each item: kept when a reranker gave one, else
        asked of the source that ranked the item best."""
        reasons = list(items.reasons) if items.reasons else [""] * len(items)
        by_name: dict[str, Source] = {s.name: s for s in self.sources} | {FALLBACK: self.fallback}
        for name, source in by_name.items():
            rows = [i for i in range(len(items)) if not reasons[i] and items.sources[i] == name]
            if rows:
                for i, reason in zip(rows, source.explain(query, items.item_codes[rows]), strict=True):
                    reasons[i] = reason if len(query.history) else f"{reason} (no history yet)"
        return items.with_provenance(reasons=[r or "recommended for you" for r in reasons])

    def similar(self, item_id: str, n: int = 10) -> list[ItemList]:
        """Items like ``item_id``: a one-item anonymous session (the item itself excluded)."""
        return self.recommend([Query(history=[item_id], exclude=[item_id])], n)

    # ------------------------------------------------------------------ evaluation
    def recommend_codes(self, users: np.ndarray, n: int = 10, *, progress: bool = False) -> np.ndarray:
        """Top-``n`` context codes (int32, -1 padded) for known user codes, from their training
        history: what the evaluation protocol ranks."""
        from tqdm.auto import tqdm

        self._check_fitted()
        users = np.asarray(users, dtype=np.int32)
        out = np.full((len(users), n), -1, dtype=np.int32)
        ids = self.context_.users.decode(users)
        step = 256
        for start in tqdm(range(0, len(users), step), desc="scoring pipeline", disable=not progress, unit="batch"):
            lists = self.recommend([Query(user=str(u)) for u in ids[start : start + step]], n)
            for row, items in enumerate(lists):
                out[start + row, : len(items)] = items.item_codes[:n]
        return out

    # ------------------------------------------------------------------ new items
    def add_items(self, catalog: Any) -> int:
        """Add catalog rows (``item_id``, ``title``, ``text``, ``categories``, ``created_at``...)
        whose id is new: they get context codes, and every stage that can place an item by its
        content (a content-capable model source, the fresh source) can return them at once.
        Returns how many were new."""
        self._check_fitted()
        frame = pd.DataFrame(catalog) if not isinstance(catalog, pd.DataFrame) else catalog
        if "item_id" not in frame.columns and "item" in frame.columns:
            frame = frame.rename(columns={"item": "item_id"})
        codes = self.context_.add_items(frame)
        if len(codes):
            for _, stage in self.stages:
                stage.add_items(frame, codes)
        return len(codes)

    # ------------------------------------------------------------------ live events
    @property
    def takes_events(self) -> bool:
        """Whether a stage learns from events as they arrive (e.g. the graph source)."""
        return any(callable(getattr(stage, "add_events", None)) for _, stage in self.stages)

    def add_events(self, user_ids: Sequence[str], item_ids: Sequence[str], timestamps: Sequence[float]) -> None:
        """Events that arrived after fitting (user, item, time), for the stages that learn from
        them at once (a graph source adds the edges, and the next request walks them)."""
        for _, stage in self.stages:
            add = getattr(stage, "add_events", None)
            if callable(add):
                add(list(user_ids), list(item_ids), list(timestamps))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted pipeline as one versioned directory (atomically): a manifest listing
        every stage, its class and config, and the sha256 of every file; the context's arrays;
        one folder per stage (its arrays, and a wrapped model's own artifact)."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            tmp.chmod(0o755)
            np.savez(tmp / "context.npz", **self.context_.arrays())
            stages = []
            for k, (role, stage) in enumerate(self.stages):
                folder = tmp / "stages" / f"{k:02d}-{role}-{_safe(stage.name)}"
                folder.mkdir(parents=True)
                arrays = stage.arrays()
                if arrays:
                    np.savez(folder / "arrays.npz", **arrays)
                stage.save_files(folder)
                stages.append({
                    "role": role, "name": stage.name, "kind": stage.kind,
                    "class": f"{type(stage).__module__}:{type(stage).__qualname__}",
                    "config": stage.config.model_dump(mode="json"), "dir": folder.relative_to(tmp).as_posix(),
                })
            files = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION,
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "library_version": tastemaker.__version__,
                "settings": {"candidates": self.candidates, "rerank_depth": self.rerank_depth, "ranker_users": self.ranker_users},
                "stages": stages, "files": files,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Load and verify a pipeline written by :meth:`save`: every file's checksum, every
        stage's class (only tastemaker's own) and config; a mismatch is an ArtifactError."""
        path = Path(path)
        manifest = read_pipeline_manifest(path)
        listed = set(manifest["files"])
        # a file slipped in among the stages' is refused (files beside the manifest, such as
        # the service's notes, are the owner's business)
        present = {p.relative_to(path).as_posix() for p in (path / "stages").rglob("*") if p.is_file()}
        if present - listed:
            raise ArtifactError(f"{path}: files not in the manifest: {', '.join(sorted(present - listed)[:5])}")
        for name, digest in manifest["files"].items():
            file = path / name
            if not file.is_file():
                raise ArtifactError(f"{path}: {name}, listed in the manifest, is missing")
            if _sha256(file) != digest:
                raise ArtifactError(f"{path}: {name} is corrupted or was changed (checksum mismatch)")
        with np.load(path / "context.npz", allow_pickle=False) as npz:
            context = Context.from_arrays({k: npz[k] for k in npz.files})
        built: dict[str, list[Stage]] = {"source": [], "ranker": [], "reranker": [], "explorer": [], "fallback": []}
        for entry in manifest["stages"]:
            stage_cls = _stage_class(path, entry["class"])
            try:
                stage = stage_cls(stage_cls.Config(**entry["config"]), name=entry["name"])
            except ValueError as exc:
                raise ArtifactError(f"{path}: stage {entry['name']!r} has a config this version cannot read: {exc}") from exc
            folder = path / entry["dir"]
            if (folder / "arrays.npz").is_file():
                with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
                    stage.set_arrays({k: npz[k] for k in npz.files})
            stage.load_files(folder)
            stage.bind(context)
            built[entry["role"]].append(stage)
        settings = manifest.get("settings", {})
        pipeline = cls(
            built["source"], built["ranker"][0], built["reranker"], built["explorer"][0],  # type: ignore[arg-type]
            candidates=settings.get("candidates", 200), rerank_depth=settings.get("rerank_depth", 100),
            ranker_users=settings.get("ranker_users", 20_000),
        )
        pipeline.fallback = built["fallback"][0]  # type: ignore[assignment]
        pipeline.context_ = context
        for stage in (pipeline.ranker, *pipeline.rerankers, pipeline.explorer):
            stage.use_sources(pipeline.sources)
        return pipeline


def merge_candidates(lists: Mapping[str, ItemList]) -> ItemList:
    """One candidate list from each source's: the union of their items (first seen first),
    with ``source_scores``/``source_ranks`` columns per source (NaN / -1 where a source did not
    retrieve the item); ``sources[i]`` is the source that ranked item i best (ties: the
    earlier source). Scores are 0 until a ranker scores them."""
    names = list(lists)
    found = [lists[name] for name in names]
    if not sum(len(items) for items in found):
        return ItemList(np.zeros(0, dtype=object), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32),
                        (), (), {name: np.zeros(0, np.float32) for name in names}, {name: np.zeros(0, np.int32) for name in names})
    # vectorised (a Python loop over a few hundred candidates cost ~0.3 ms per request)
    every = np.concatenate([items.item_codes for items in found]).astype(np.int64)
    _, first = np.unique(every, return_index=True)
    first.sort()  # first appearances, in the order the sources listed them
    codes = every[first]
    ids = np.concatenate([np.asarray(items.item_ids, dtype=object) for items in found])[first]
    count = len(codes)
    sorter = np.argsort(codes)
    source_scores, source_ranks = {}, {}
    all_ranks = np.full((len(names), count), np.iinfo(np.int32).max, dtype=np.int64)
    for k, (name, items) in enumerate(zip(names, found, strict=True)):
        scores = np.full(count, np.nan, dtype=np.float32)
        ranks = np.full(count, -1, dtype=np.int32)
        rows = sorter[np.searchsorted(codes, items.item_codes, sorter=sorter)]
        scores[rows] = items.scores
        ranks[rows] = np.arange(len(items), dtype=np.int32)
        all_ranks[k, rows] = ranks[rows]
        source_scores[name], source_ranks[name] = scores, ranks
    best = np.argmin(all_ranks, axis=0)  # the first of equal ranks: the earlier source
    return ItemList(ids, codes.astype(np.int32), np.zeros(count, dtype=np.float32),
                    tuple(names[b] for b in best.tolist()), (), source_scores, source_ranks)


def read_pipeline_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    if not file.is_file():
        raise ArtifactError(f"{path} is not a pipeline artifact: {MANIFEST} is missing")
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{file} is corrupted: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{file}: not a {FORMAT} manifest (a single model's artifact? load it with load_model)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: pipeline format version {manifest.get('format_version')} is not supported (this reads {FORMAT_VERSION})")
    return manifest


def is_pipeline(path: str | Path) -> bool:
    """Whether ``path`` holds a pipeline artifact (else, perhaps, a single model's)."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format") == FORMAT  # type: ignore[no-any-return]
    except (OSError, json.JSONDecodeError):
        return False


def _stage_class(path: Path, name: str) -> type[Stage]:
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith("tastemaker."):
        raise ArtifactError(f"{path}: refusing to import a stage class from {module_name!r}")
    try:
        stage_cls = getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError) as exc:
        raise ArtifactError(f"{path}: stage class {name} is not available: {exc}") from exc
    if not (isinstance(stage_cls, type) and issubclass(stage_cls, Stage)):
        raise ArtifactError(f"{path}: {name} is not a pipeline stage")
    return stage_cls


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "stage"


class _Clock:
    """Adds each ``with clock(stage):`` block's seconds to ``timings[stage]`` (no-op without)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings

    def __call__(self, stage: str) -> _Timer:
        return _Timer(self.timings, stage)


class _Timer:
    def __init__(self, timings: dict[str, float] | None, stage: str) -> None:
        self.timings, self.stage = timings, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.timings is not None:
            self.timings[self.stage] = self.timings.get(self.stage, 0.0) + time.perf_counter() - self.start
