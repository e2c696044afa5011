"""The CI rule in tests/conftest.py: with TASTEMAKER_REQUIRE_EXTRAS=1 a skip for a missing extra
or dataset fails, while other skips stay skips (run on a scratch suite in a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRATCH = {
    "test_missing_module.py": "import pytest\npytest.importorskip('no_such_module_xyz')\ndef test_a(): pass\n",
    "test_reasons.py": (
        "import pytest\n"
        "def test_needs_extra(): pytest.skip(\"needs the text extra: pip install 'tastemaker[text]'\")\n"
        "def test_not_applicable(): pytest.skip('the known answer does not apply to this model')\n"
        "def test_runs(): pass\n"
    ),
}


def _run(tmp_path: Path, required: bool) -> str:
    for name, text in SCRATCH.items():
        (tmp_path / name).write_text(text)
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    env = {k: v for k, v in os.environ.items() if k not in ("TASTEMAKER_REQUIRE_EXTRAS", "PYTEST_ADDOPTS")}
    if required:
        env["TASTEMAKER_REQUIRE_EXTRAS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    return proc.stdout.strip().splitlines()[-1]


def test_without_the_switch_missing_extras_skip(tmp_path: Path) -> None:
    summary = _run(tmp_path, required=False)
    assert summary.startswith("1 passed, 3 skipped"), summary


def test_with_the_switch_missing_extras_fail_and_other_skips_stay(tmp_path: Path) -> None:
    summary = _run(tmp_path, required=True)
    assert "1 failed" in summary and "1 passed" in summary and "1 skipped" in summary and "1 error" in summary, summary


def test_test_modules_have_unique_basenames() -> None:
    # The test folders are not packages, so pytest imports each module by its basename: two files
    # with one name break collection of the whole suite on a clean checkout (CI failed this way).
    names: dict[str, list[str]] = {}
    for path in Path(__file__).parent.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(Path(__file__).parent)))
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not clashes, f"rename one of each: {clashes}"
