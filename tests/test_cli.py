"""The command line, run in-process through ``tastemaker.cli.main`` (plus one real subprocess)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tastemaker.cli import main
from tastemaker.data.dataset import save_dataset
from tastemaker.testing.synthetic import checkerboard

SCRIPT = Path(sys.executable).parent / "tastemaker"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """checkerboard(10, 10) saved as a dataset directory; titles are 'Even item 4' etc."""
    path = tmp_path_factory.mktemp("data") / "checkerboard"
    save_dataset(checkerboard(10, 10), path)
    return path


@pytest.fixture(scope="module")
def artifact(saved, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "ease"
    assert main(["train", "--saved", str(saved), "--model", "ease", "--param", "reg=10", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    return out


def test_help_in_a_subprocess():
    assert SCRIPT.exists(), SCRIPT
    proc = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "evaluate", "recommend", "data", "demo"):
        assert command in proc.stdout


def test_train_writes_an_artifact(saved, tmp_path, capsys):
    out = tmp_path / "art"
    code = main(["train", "--saved", str(saved), "--model", "ease", "--param", "reg=10", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "EASE(reg=10.0, precision='float16')" in printed
    assert str(out) in printed
    assert (out / "manifest.json").is_file()


def test_recommend_prints_titles(artifact, capsys):
    code = main(["recommend", "--artifact", str(artifact), "--user", "u0", "-n", "3"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "top 3 for user u0 from EASE:"
    # Known answer: u0 has seen every even item but i0, so i0 comes first; the odd items
    # (EASE score exactly 0: the Gram matrix is block-diagonal by parity) follow, lower code first.
    assert lines[1].startswith("  1. Even item 0  [i0]  score=")
    assert "Odd item 1  [i1]" in lines[2]
    assert "Odd item 3  [i3]" in lines[3]
    assert len(lines) == 4
    assert "popular-fallback" not in "\n".join(lines)


def test_recommend_unknown_user_gets_the_popular_fallback(artifact, capsys):
    code = main(["recommend", "--artifact", str(artifact), "--user", "nobody", "-n", "3"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "top 3 for user nobody (unknown user) from EASE:"
    # every item has 4 users in checkerboard(10, 10) (5 same-parity users, minus user i),
    # so popularity ties and the lowest codes win: i0, i1, i2
    assert lines[1].startswith("  1. Even item 0  [i0]  score=4.0000")
    assert "Odd item 1  [i1]" in lines[2] and "Even item 2  [i2]" in lines[3]
    assert all(line.endswith("(popular-fallback)") for line in lines[1:])


def test_recommend_unknown_user_with_history_folds_in(artifact, capsys):
    code = main(["recommend", "--artifact", str(artifact), "--user", "nobody", "--history", "i1,i3", "-n", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "popular-fallback" not in out
    # an odd history: the best unseen items are odd
    body = out.strip().splitlines()[1:]
    assert all("Odd item" in line for line in body)


def test_evaluate_writes_reports(saved, tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text("[ease]\nreg = [1.0, 100.0]\n")
    out = tmp_path / "report"
    code = main(
        ["evaluate", "--saved", str(saved), "--models", "most-popular,ease", "--grid", str(grid), "--out", str(out), "--quiet"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "most-popular" in printed and "ease" in printed
    report = json.loads((out / "report.json").read_text())
    assert [r["model"] for r in report["results"]] == ["most-popular", "ease"]
    ease = report["results"][1]
    assert ease["params"]["reg"] in (1.0, 100.0)
    assert [t["params"]["reg"] for t in ease["tuning"]] == [1.0, 100.0]
    assert report["split"] == "leave-one-out"
    assert report["n_users"] == 10 and report["n_items"] == 10
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Evaluation: checkerboard")
    assert "| most-popular |" in markdown and "| ease |" in markdown


def test_unknown_model_in_evaluate_exits_2(saved, tmp_path, capsys):
    code = main(["evaluate", "--saved", str(saved), "--models", "ease,nope", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err
    assert "ease" in err  # the valid names are listed


def test_unknown_model_in_train_exits_2(saved, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--saved", str(saved), "--model", "nope", "--out", str(tmp_path / "x")])
    assert info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_unknown_model_in_grid_file_exits_2(saved, tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text("[nope]\nreg = [1.0]\n")
    code = main(["evaluate", "--saved", str(saved), "--grid", str(grid), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_bad_param_value_gives_a_clear_error(saved, tmp_path, capsys):
    out = tmp_path / "art"
    code = main(["train", "--saved", str(saved), "--model", "ease", "--param", "reg=abc", "--out", str(out), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("tastemaker: error:")
    assert "reg" in err and "abc" in err
    assert not out.exists()


def test_malformed_param_gives_a_clear_error(saved, tmp_path, capsys):
    code = main(["train", "--saved", str(saved), "--model", "ease", "--param", "reg", "--out", str(tmp_path / "a"), "--quiet"])
    assert code == 2
    assert "not of the form name=value" in capsys.readouterr().err


def test_unknown_param_name_is_an_error(saved, tmp_path, capsys):
    code = main(["train", "--saved", str(saved), "--model", "ease", "--param", "regg=5", "--out", str(tmp_path / "a"), "--quiet"])
    assert code == 2
    assert "regg" in capsys.readouterr().err


def test_missing_saved_dataset_exits_2(tmp_path, capsys):
    code = main(["train", "--saved", str(tmp_path / "missing"), "--model", "ease", "--out", str(tmp_path / "a"), "--quiet"])
    assert code == 2
    assert "dataset.json" in capsys.readouterr().err


def test_recommend_from_missing_artifact_exits_2(tmp_path, capsys):
    code = main(["recommend", "--artifact", str(tmp_path / "none"), "--user", "u0"])
    assert code == 2
    assert "manifest.json" in capsys.readouterr().err


# ---------------------------------------------------------------------- your own data into a store
def _own_files(tmp_path: Path) -> tuple[Path, Path]:
    """A user's own CSVs, in their own column names: two taste groups over six films."""
    events = tmp_path / "events.csv"
    rows = ["uid,mid,when"]
    for u in range(8):
        films = ["m1", "m2", "m3"] if u % 2 else ["m4", "m5", "m6"]
        rows += [f"p{u},{m},{1000 + 10 * u + k}" for k, m in enumerate(films) if (u + k) % 3]
    events.write_text("\n".join(rows) + "\n")
    items = tmp_path / "items.csv"
    items.write_text("mid,name,studio\n" + "\n".join(f"m{k},Film {k},studio{k % 2}" for k in range(1, 7)) + "\n")
    return events, items


def test_import_loads_own_files_into_a_store(tmp_path, capsys):
    from tastemaker.store import open_store

    events, items = _own_files(tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    args = ["import", "--store", url, "--table", str(events), "--columns", "uid=user,mid=item,when=timestamp",
            "--catalog", str(items), "--catalog-columns", "mid=item_id,name=title", "--quiet"]
    assert main(args) == 0
    n_events = len(events.read_text().splitlines()) - 1
    assert capsys.readouterr().out.strip().startswith(f"imported 6 items and {n_events} events")
    store = open_store(url)
    try:
        assert store.count_events() == n_events
        film = store.get_item("m2")
        assert film is not None and film.title == "Film 2" and film.attributes == {"studio": "studio0"}
        assert [e.item_id for e in store.history("p1")] == ["m1", "m2"]  # in time order; (1 + 2) % 3 dropped m3
        assert store.history("p1")[0].timestamp == 1010.0
    finally:
        store.close()
    # a second import would duplicate the events: refused unless asked for
    assert main(args) == 2
    assert "already holds" in capsys.readouterr().err
    assert main([*args, "--append"]) == 0


def test_serve_seeds_an_empty_store_from_own_files(tmp_path):
    pytest.importorskip("fastapi")
    import httpx

    from tastemaker.testing.http import free_port

    events, items = _own_files(tmp_path)
    port = free_port()
    command = [str(SCRIPT), "serve", "--store", f"sqlite:///{tmp_path / 's.db'}", "--models-dir", str(tmp_path / "m"),
               "--port", str(port), "--quiet", "--seed-table", str(events), "--seed-columns", "uid=user,mid=item,when=timestamp",
               "--seed-catalog", str(items), "--seed-catalog-columns", "mid=item_id,name=title"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        recs = httpx.get(f"http://127.0.0.1:{port}/v1/users/p1/recommendations", params={"n": 1}).json()
        assert recs["model_version"] == "v0001"
        assert recs["items"][0]["item_id"] == "m3" and recs["items"][0]["title"] == "Film 3"  # p1's group, unseen
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert output.count("no API keys configured") == 1, output  # said once, not once per Service


# ---------------------------------------------------------------------- pipelines
PIPE = "[[sources]]\nkind = 'model'\nmodel = 'ease'\nparams = { reg = 10.0 }\n[[sources]]\nkind = 'popularity'\n"


def test_train_and_recommend_a_pipeline(saved, tmp_path, capsys):
    spec = tmp_path / "pipe.toml"
    spec.write_text(PIPE)
    out = tmp_path / "pipe-artifact"
    assert main(["train", "--saved", str(saved), "--pipeline", str(spec), "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert "trained Pipeline(ease(model='ease', params={'reg': 10.0}) + popular -> fusion)" in capsys.readouterr().out
    assert main(["recommend", "--artifact", str(out), "--user", "u0", "-n", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "top 2 for user u0 from the pipeline ease+popular:"
    assert lines[1].startswith("  1. Even item 0  [i0]") and "(ease: because you liked Even item" in lines[1]
    assert main(["train", "--saved", str(saved), "--out", str(out), "--quiet"]) == 2  # neither --model nor --pipeline
    assert "either --model" in capsys.readouterr().err


def test_evaluate_a_pipeline_beside_its_sources(saved, tmp_path, capsys):
    spec = tmp_path / "pipe.toml"
    spec.write_text(PIPE)
    assert main(["evaluate", "--saved", str(saved), "--pipeline", str(spec), "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["model"] for r in report["results"]] == ["pipeline (ease+popular)", "ease alone", "popular alone"]


def test_a_bad_pipeline_file_exits_2_naming_the_key(saved, tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text("[[sources]]\nkind = 'model'\nmodel = 'ease'\n[ranker]\nkind = 'fusion'\nmethod = 'magic'\n")
    assert main(["train", "--saved", str(saved), "--pipeline", str(spec), "--out", str(tmp_path / "x")]) == 2
    assert "ranker.method: Input should be 'rrf' or 'weighted'" in capsys.readouterr().err
