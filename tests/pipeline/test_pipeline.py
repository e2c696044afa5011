"""The pipeline as one unit: merging, explanations, the fallback, new items, one artifact
(round trip, tampering refused), TOML config errors, and library = CLI = service."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tastemaker.cli import main
from tastemaker.data.dataset import Dataset
from tastemaker.errors import ArtifactError
from tastemaker.pipeline import FreshSource, FusionRanker, ModelSource, Pipeline, PopularitySource, merge_candidates
from tastemaker.pipeline.config import PipelineConfigError, build_pipeline, load_pipeline_config
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions, ItemList, Query

OPTIONS = FitOptions(seed=3, threads=1, progress=False)


def _list(ids: list[str], codes: list[int], scores: list[float], source: str) -> ItemList:
    return ItemList(np.array(ids, dtype=object), np.array(codes, dtype=np.int32), np.array(scores, dtype=np.float32), (source,) * len(ids))


def test_merge_keeps_each_sources_score_and_rank() -> None:
    merged = merge_candidates({
        "a": _list(["x", "y"], [0, 1], [0.9, 0.5], "a"),
        "b": _list(["z", "y", "x"], [2, 1, 0], [3.0, 2.0, 1.0], "b"),
    })
    assert merged.item_ids.tolist() == ["x", "y", "z"]
    assert merged.source_ranks["a"].tolist() == [0, 1, -1] and merged.source_ranks["b"].tolist() == [2, 1, 0]
    np.testing.assert_array_equal(merged.source_scores["b"], [1.0, 2.0, 3.0])
    assert np.isnan(merged.source_scores["a"][2])
    assert merged.sources == ("a", "a", "b")  # y is rank 1 in both: the earlier source keeps it
    ranked = FusionRanker().rank([Query()], [merged])[0]
    # RRF: x = 1/61 + 1/63, y = 1/62 + 1/62, z = 1/61
    assert ranked.item_ids.tolist() == ["x", "y", "z"]
    np.testing.assert_allclose(ranked.scores, [1 / 61 + 1 / 63, 2 / 62, 1 / 61], rtol=1e-6)


def _fresh_catalog() -> Dataset:
    data = checkerboard()
    catalog = data.catalog.assign(created_at=np.arange(len(data.catalog), dtype=float) * 86_400.0)
    return Dataset.from_frames(
        pd.DataFrame({"user": data.users.decode(data.interactions["user"].to_numpy()),
                      "item": data.items.decode(data.interactions["item"].to_numpy()),
                      "timestamp": data.interactions["timestamp"]}),
        catalog=catalog[["item_id", "title", "categories", "created_at"]], name="checkerboard-dated",
    )


def test_reasons_come_from_the_stage_that_placed_the_item() -> None:
    pipeline = Pipeline([ModelSource(model="ease", params={"reg": 1.0}), PopularitySource(), FreshSource()]).fit(_fresh_catalog(), OPTIONS)
    (known,) = pipeline.recommend([Query(user="u0")], n=3)
    assert known.item_ids[0] == "i0" and known.sources[0] == "ease"  # the checkerboard's known answer
    assert re.fullmatch(r"because you liked (Even|Odd) item \d+", known.reasons[0])
    (cold,) = pipeline.recommend([Query(user="a-stranger")], n=3)
    assert set(cold.sources) <= {"popular", "fresh"} and all(r.endswith("(no history yet)") for r in cold.reasons)
    assert "fresh" in cold.sources or "popular" in cold.sources
    typed = pipeline.recommend([Query(history=["i2"], context={"event_types": {"i2": "watch"}})], n=1)[0]
    assert typed.reasons[0] == "because you watched Even item 2"


def test_the_fallback_answers_when_no_source_can() -> None:
    pipeline = Pipeline([ModelSource(model="ease", params={"reg": 1.0})]).fit(checkerboard(), OPTIONS)
    (items,) = pipeline.recommend([Query(user="nobody")], n=4)
    assert set(items.sources) == {"popular-fallback"} and len(items) == 4
    assert all(r.startswith("popular") and r.endswith("(no history yet)") for r in items.reasons)


def test_a_new_item_is_placed_by_the_content_source_at_once() -> None:
    data = checkerboard()
    catalog = data.catalog.assign(text=[f"{t} about {'evenness' if i % 2 == 0 else 'oddness'}" for i, t in enumerate(data.catalog["title"])])
    data = Dataset.from_frames(
        pd.DataFrame({"user": data.users.decode(data.interactions["user"].to_numpy()),
                      "item": data.items.decode(data.interactions["item"].to_numpy())}),
        catalog=catalog[["item_id", "title", "categories", "text"]],
    )
    pipeline = Pipeline([ModelSource(model="ease", params={"reg": 1.0}), ModelSource(model="content", params={"encoder": "tfidf"})]).fit(data, OPTIONS)
    added = pipeline.add_items(pd.DataFrame({"item_id": ["new"], "title": ["Even item 99"], "text": ["Even item 99 about evenness"],
                                             "categories": [["even"]]}))
    assert added == 1 and "new" in pipeline.items_
    (items,) = pipeline.recommend([Query(history=["i2", "i4"])], n=40)
    where = items.item_ids.tolist().index("new")
    assert items.sources[where] == "content" and items.reasons[where].startswith("new item like Even item")


def test_one_artifact_round_trips_and_refuses_tampering(tmp_path: Path) -> None:
    pipeline = Pipeline([ModelSource(model="ease", params={"reg": 1.0}), ModelSource(model="als", params={"embedding_size": 8}),
                         PopularitySource(mode="trending")]).fit(checkerboard(), OPTIONS)
    path = pipeline.save(tmp_path / "pipe")
    queries = [Query(user="u1"), Query(history=["i3"]), Query(user="zz")]
    loaded = Pipeline.load(path)
    for a, b in zip(pipeline.recommend(queries, n=6), loaded.recommend(queries, n=6), strict=True):
        assert a.item_ids.tolist() == b.item_ids.tolist() and a.reasons == b.reasons
    weights = next((path / "stages").glob("*-source-ease/model/arrays.npz"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ArtifactError, match="arrays.npz is corrupted or was changed"):
        Pipeline.load(path)
    path = pipeline.save(tmp_path / "pipe")
    (path / "stages" / "extra.npz").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="not in the manifest"):
        Pipeline.load(path)


def test_bad_pipeline_files_name_the_key(tmp_path: Path) -> None:
    cases = {
        "[[sources]]\nkind = 'model'\nmodel = 'ease'\nparams = { reg = -1 }\n": r"sources\[0\]\.params: .*reg: Input should be greater than 0",
        "[[sources]]\nkind = 'model'\nmodel = 'ease'\n[[sources]]\nkind = 'popularity'\nmood = 'x'\n": r"sources\[1\]\.mood: Extra inputs",
        "[[sources]]\nkind = 'model'\nmodel = 'ease'\n[ranker]\nkind = 'fusion'\nk = -3\n": r"ranker\.k: Input should be greater than or equal to 0",
        "[[sources]]\nkind = 'telepathy'\n": r"sources\[0\]\.kind: unknown source kind 'telepathy'",
        "candidates = 'many'\n[[sources]]\nkind = 'fresh'\n": r"candidates: Input should be a valid integer",
        "[[sources]]\nkind = 'fresh'\n[[sources]]\nkind = 'fresh'\n": r"stage names must be unique.*fresh",
        "sources = [\n": r"not valid TOML",
    }
    for k, (text, pattern) in enumerate(cases.items()):
        file = tmp_path / f"bad{k}.toml"
        file.write_text(text)
        with pytest.raises(PipelineConfigError, match=pattern):
            load_pipeline_config(file)
    with pytest.raises(PipelineConfigError, match="no such file"):
        load_pipeline_config(tmp_path / "missing.toml")
    assert load_pipeline_config("default").name == "ease+content+popular-in-category+fresh+next"
    assert build_pipeline({"sources": [{"kind": "model", "model": "ease", "name": "cf"}]}).sources[0].name == "cf"


def test_library_cli_and_service_give_the_same_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fastapi")
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
    from test_api import seed  # type: ignore[import-not-found]

    from tastemaker.serve.settings import Settings, TrainingSettings
    from tastemaker.store import open_store
    from tastemaker.testing.http import live_server

    spec = tmp_path / "pipe.toml"
    spec.write_text("[[sources]]\nkind = 'model'\nmodel = 'ease'\nparams = { reg = 10.0 }\n[[sources]]\nkind = 'model'\n"
                    "model = 'itemknn'\nparams = { k = 8 }\n[[sources]]\nkind = 'popularity'\n")
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m",
                        training=TrainingSettings(pipeline=str(spec), beat_popularity=False))
    users = ["action-fan-1", "drama-fan-4", "stranger"]
    with live_server(settings) as client:
        seed(client)
        served = {u: [i["item_id"] for i in client.get(f"/v1/users/{u}/recommendations", params={"n": 6}).json()["items"]] for u in users}
        session = [i["item_id"] for i in client.post("/v1/recommendations", json={"items": ["d1", "a2"], "n": 6}).json()["items"]]
    store = open_store(settings.store_url)
    try:
        data = store.to_dataset()
    finally:
        store.close()
    library = load_pipeline_config(spec).fit(data, FitOptions(threads=1, progress=False))
    for user in users:
        assert library.recommend([Query(user=user)], n=6)[0].item_ids.tolist() == served[user]
    assert library.recommend([Query(history=["d1", "a2"], exclude=["d1", "a2"])], n=6)[0].item_ids.tolist() == session
    artifact = library.save(tmp_path / "artifact")
    assert main(["recommend", "--artifact", str(artifact), "--user", users[0], "-n", "6"]) == 0
    printed = re.findall(r"\[([^\]]+)\]  score=", capsys.readouterr().out)
    assert printed == served[users[0]]


def test_a_reranker_reads_a_named_sources_vectors_from_toml(tmp_path: Path) -> None:
    spec = {"sources": [{"kind": "model", "model": "als", "params": {"embedding_size": 8, "epochs": 5}}, {"kind": "popularity"}],
            "rerankers": [{"kind": "mmr", "weight": 0.9, "vectors": "als"}]}
    pipeline = build_pipeline(spec).fit(checkerboard(), OPTIONS)
    (items,) = pipeline.recommend([Query(user="u0")], n=6)
    assert "mmr" in items.sources and "added for variety" in items.reasons
    loaded = Pipeline.load(pipeline.save(tmp_path / "p"))
    assert loaded.recommend([Query(user="u0")], n=6)[0].item_ids.tolist() == items.item_ids.tolist()
    with pytest.raises(ValueError, match="names no source of this pipeline"):
        build_pipeline({**spec, "rerankers": [{"kind": "mmr", "vectors": "nope"}]}).fit(checkerboard(), OPTIONS)


def test_a_one_source_pipeline_answers_the_same_from_n_candidates() -> None:
    """The single-source shortcut (retrieve n, not `candidates`) changes nothing: same items,
    scores, sources and reasons as a pipeline that retrieves 200 and fuses them."""
    from tastemaker.data.loaders import load_dataset
    from tastemaker.pipeline import ModelSource, Pipeline
    from tastemaker.rerank import MMRReranker
    from tastemaker.types import FitOptions, Query

    data = load_dataset("movielens-latest-small")
    options = FitOptions(progress=False, threads=1, seed=3)
    fast = Pipeline([ModelSource(model="als", params={"embedding_size": 16, "epochs": 3})]).fit(data, options)
    # a reranker at weight 0 keeps the ranking as it is but turns the shortcut off
    full = Pipeline([ModelSource(model="als", params={"embedding_size": 16, "epochs": 3})],
                    rerankers=[MMRReranker(weight=0.0)]).fit(data, options)
    queries = [Query(user=u) for u in ("1", "7", "414")] + [Query(history=["1", "2571"]), Query(user="no-such-user")]
    for a, b in zip(fast.recommend(queries, n=10), full.recommend(queries, n=10), strict=True):
        assert a.item_ids.tolist() == b.item_ids.tolist() and a.sources == b.sources and a.reasons == b.reasons
        np.testing.assert_allclose(a.scores, b.scores)
