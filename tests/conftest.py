"""Shared test fixtures, and the rule that CI never skips for a missing extra or dataset.

``TASTEMAKER_REQUIRE_EXTRAS=1`` (set by ``.ci/run``) turns every skip whose reason is a
missing dependency (``pytest.importorskip``, "needs the ... extra", "No module named ...",
the public datasets) into a failure, at collection and at run time: CI installs everything
the suite uses, so such a skip there is a broken install, not a pass. Skips for other reasons
(a known answer that does not apply to a model, a GPU test on a machine without one) stay skips.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Skip reasons that mean "something is not installed or not there".
MISSING = re.compile(r"could not import|no module named|needs the |not installed|TASTEMAKER_DATA|extra", re.IGNORECASE)


def _required() -> bool:
    return os.environ.get("TASTEMAKER_REQUIRE_EXTRAS", "") not in ("", "0")


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_if_missing(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and _required():
        reason = _skip_reason(report)
        if MISSING.search(reason):
            report.outcome = "failed"
            report.longrepr = f"TASTEMAKER_REQUIRE_EXTRAS is set, and this would have skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_if_missing(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_if_missing(outcome.get_result())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``realdata`` skip when $TASTEMAKER_DATA is unset."""
    if os.environ.get("TASTEMAKER_DATA"):
        return
    skip = pytest.mark.skip(reason="needs the public datasets: set TASTEMAKER_DATA")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding the public datasets, one sub-folder per name ($TASTEMAKER_DATA)."""
    root = os.environ.get("TASTEMAKER_DATA")
    if not root:
        pytest.skip("needs the public datasets: set TASTEMAKER_DATA")
    return Path(root)
