"""kill -9 the real server mid-stream, restart it: every acknowledged event is still there."""

from __future__ import annotations

from tastemaker.testing.crash import kill_drill


def test_acknowledged_events_survive_kill_9(tmp_path) -> None:
    result = kill_drill(tmp_path, kills=3, seed=1, min_uptime=0.3, max_uptime=0.8)
    assert result.acknowledged > 20, result  # the drill really sent events before each kill
    assert result.missing == 0, result
    assert result.stored >= result.acknowledged
    # retries carry the event id, so an event committed just before a kill is never stored twice
    assert result.retried >= 1 and result.duplicates == 0, result
