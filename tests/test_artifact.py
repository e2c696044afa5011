"""Artifacts: round trips for every registered model, atomic overwrite, refusals, no pickle."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tastemaker.artifact import MANIFEST, load_model, read_manifest, save_model
from tastemaker.config import CLASSICAL, model_class
from tastemaker.errors import ArtifactError
from tastemaker.models.ease import EASE
from tastemaker.models.popularity import MostPopular
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions, Query

OPTIONS = FitOptions(progress=False, threads=1, seed=3)
FAST_PARAMS = {
    "most-popular": {},
    "itemknn": {"k": 5},
    "ease": {"reg": 10.0},
    "als": {"embedding_size": 4, "epochs": 3},
    "bpr": {"embedding_size": 4, "epochs": 5},
}


@pytest.fixture(scope="module")
def data():
    return checkerboard(12, 12)


def queries():
    return [
        Query(user="u0"),
        Query(user="u5"),
        Query(user="u3", history=["i0"]),  # known user with new events: fold-in
        Query(user="stranger", history=["i2", "i4"]),  # unknown user: fold-in
        Query(),  # anonymous, no history: popular fallback
    ]


def test_every_registered_model_has_fast_params():
    assert set(FAST_PARAMS) == set(CLASSICAL)


@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_round_trip_gives_equal_scores(name, data, tmp_path):
    model = model_class(name)(**FAST_PARAMS[name]).fit(data, OPTIONS)
    path = model.save(tmp_path / name)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert loaded.users_ == model.users_ and loaded.items_ == model.items_
    assert loaded.item_titles_.tolist() == model.item_titles_.tolist()
    np.testing.assert_array_equal(loaded.item_popularity_, model.item_popularity_)
    assert (loaded.user_items_ != model.user_items_).nnz == 0
    items = list(data.items.ids)
    np.testing.assert_array_equal(loaded.score(queries(), items), model.score(queries(), items))
    before = model.recommend(queries(), n=5)
    after = loaded.recommend(queries(), n=5)
    for a, b in zip(before, after, strict=True):
        assert a.item_ids.tolist() == b.item_ids.tolist()
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.sources == b.sources
    # the class-level loader agrees and checks the class
    assert isinstance(type(model).load(path), type(model))


def test_load_as_another_class_is_refused(data, tmp_path):
    path = MostPopular().fit(data, OPTIONS).save(tmp_path / "pop")
    with pytest.raises(TypeError, match="MostPopular"):
        EASE.load(path)


def test_manifest_contents(data, tmp_path):
    path = EASE(reg=10.0).fit(data, OPTIONS).save(tmp_path / "ease")
    manifest = read_manifest(path)
    assert manifest["format"] == "tastemaker-artifact"
    assert manifest["model"]["class"] == "tastemaker.models.ease:EASE"
    assert manifest["model"]["config"] == {"reg": 10.0, "precision": "float16"}
    assert manifest["schema"]["n_users"] == 12 and manifest["schema"]["n_items"] == 12
    assert set(manifest["files"]) == {"users.parquet", "items.parquet", "arrays.npz"}
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "items.parquet", MANIFEST, "users.parquet"]


def test_second_save_replaces_the_first_atomically(data, tmp_path):
    parent = tmp_path / "artifacts"
    path = parent / "current"
    save_model(EASE(reg=10.0).fit(data, OPTIONS), path)
    assert isinstance(load_model(path), EASE)
    save_model(MostPopular().fit(data, OPTIONS), path)
    loaded = load_model(path)
    assert isinstance(loaded, MostPopular)
    # nothing left behind: no ".current.*" temporary or ".current.old" directory
    assert [p.name for p in parent.iterdir()] == ["current"]
    # and the old model's files are gone from the artifact
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        assert "weights" not in npz.files and "scores" in npz.files


def test_failed_save_leaves_the_old_artifact_and_no_temp_dirs(data, tmp_path):
    path = tmp_path / "current"
    save_model(EASE(reg=10.0).fit(data, OPTIONS), path)

    class Broken(MostPopular):
        def _arrays(self):
            return {"item_popularity": np.zeros(3)}  # a reserved name: save refuses it

    with pytest.raises(ValueError, match="reserved"):
        save_model(Broken().fit(data, OPTIONS), path)
    assert isinstance(load_model(path), EASE)
    assert [p.name for p in tmp_path.iterdir()] == ["current"]


def test_missing_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_model(tmp_path / "nothing-here")


def test_missing_listed_file(data, tmp_path):
    path = EASE(reg=10.0).fit(data, OPTIONS).save(tmp_path / "a")
    (path / "arrays.npz").unlink()
    with pytest.raises(ArtifactError, match="arrays.npz"):
        load_model(path)


def test_corrupted_manifest_json(data, tmp_path):
    path = EASE(reg=10.0).fit(data, OPTIONS).save(tmp_path / "a")
    (path / MANIFEST).write_text('{"format": "tastemaker-artifact", ')
    with pytest.raises(ArtifactError, match="corrupted"):
        load_model(path)


def test_corrupted_array_file(data, tmp_path):
    path = EASE(reg=10.0).fit(data, OPTIONS).save(tmp_path / "a")
    with (path / "arrays.npz").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00garbage\x00")
    with pytest.raises(ArtifactError, match="checksum"):
        load_model(path)


def edit_manifest(path, change):
    manifest = json.loads((path / MANIFEST).read_text())
    change(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def test_class_outside_tastemaker_is_refused(data, tmp_path):
    path = EASE(reg=10.0).fit(data, OPTIONS).save(tmp_path / "a")
    edit_manifest(path, lambda m: m["model"].update({"class": "os:system"}))
    with pytest.raises(ArtifactError, match="refusing"):
        load_model(path)
    # a look-alike prefix is not inside the package either
    edit_manifest(path, lambda m: m["model"].update({"class": "tastemakerevil.models:EASE"}))
    with pytest.raises(ArtifactError, match="refusing"):
        load_model(path)


def test_non_recommender_class_inside_tastemaker_is_refused(data, tmp_path):
    path = EASE(reg=10.0).fit(data, OPTIONS).save(tmp_path / "a")
    edit_manifest(path, lambda m: m["model"].update({"class": "tastemaker.types:Query"}))
    with pytest.raises(ArtifactError, match="not a Recommender"):
        load_model(path)


def test_other_format_version_is_refused(data, tmp_path):
    path = EASE(reg=10.0).fit(data, OPTIONS).save(tmp_path / "a")
    edit_manifest(path, lambda m: m.update({"format_version": 99}))
    with pytest.raises(ArtifactError, match="version 99"):
        load_model(path)


def test_config_edit_is_caught_by_the_schema_hash(data, tmp_path):
    path = EASE(reg=10.0).fit(data, OPTIONS).save(tmp_path / "a")
    edit_manifest(path, lambda m: m["model"].update({"config": {"reg": 99.0}}))
    with pytest.raises(ArtifactError, match="schema hash"):
        load_model(path)


def test_arrays_load_without_pickle(data, tmp_path):
    path = EASE(reg=10.0).fit(data, OPTIONS).save(tmp_path / "a")
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert set(arrays) == {"weights", "seen_indptr", "seen_indices", "item_popularity"}
    assert arrays["weights"].shape == (12, 12)
    assert all(a.dtype != object for a in arrays.values())
    # 12 users with 5 events each in checkerboard(12, 12)
    assert arrays["seen_indptr"].tolist() == list(range(0, 61, 5))


def test_artifact_directory_permissions_follow_the_umask(data, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = MostPopular().fit(data, OPTIONS).save(tmp_path / "a")
    finally:
        os.umask(old)
    assert (path / "arrays.npz").stat().st_mode & 0o777 == 0o644
    assert path.stat().st_mode & 0o777 == 0o755


# An EASE artifact written before EASEConfig.precision existed (float32 weights, config
# {"reg": 10.0}): EASE(reg=10.0) on checkerboard(12, 12), seed 3.
FORMAT1_EASE = Path(__file__).parent / "fixtures" / "ease-format1-float32"


def test_ease_weights_are_stored_as_float16_at_half_the_size(data, tmp_path):
    half = EASE(reg=10.0).fit(data, OPTIONS)
    full = EASE(reg=10.0, precision="float32").fit(data, OPTIONS)
    with np.load(half.save(tmp_path / "half") / "arrays.npz", allow_pickle=False) as npz:
        assert npz["weights"].dtype == np.float16
    with np.load(full.save(tmp_path / "full") / "arrays.npz", allow_pickle=False) as npz:
        assert npz["weights"].dtype == np.float32
    assert half.weights_.dtype == np.float32  # scored in float32 either way
    np.testing.assert_array_equal(half.weights_, full.weights_.astype(np.float16).astype(np.float32))
    assert load_model(tmp_path / "half").weights_.tobytes() == half.weights_.tobytes()


def test_an_artifact_with_float32_weights_from_before_precision_still_loads(data, tmp_path):
    path = shutil.copytree(FORMAT1_EASE, tmp_path / "old")
    assert read_manifest(path)["model"]["config"] == {"reg": 10.0}
    loaded = load_model(path)
    assert isinstance(loaded, EASE) and loaded.weights_.dtype == np.float32
    reference = EASE(reg=10.0, precision="float32").fit(data, OPTIONS)
    items = list(data.items.ids)
    np.testing.assert_allclose(loaded.score(queries(), items), reference.score(queries(), items), rtol=1e-6, atol=1e-7)
