"""How the applier learns operation durations from GKE's own start and end times (tasks/apply.Durations)."""

from __future__ import annotations

from google.cloud import container_v1

from tasks.apply import Durations, operation_seconds


def op(start: str, end: str, error: bool = False) -> container_v1.Operation:
    msg = container_v1.Operation(start_time=start, end_time=end, status=container_v1.Operation.Status.DONE)
    if error:
        msg.error.code = 13
    return msg


def test_operation_seconds_reads_rfc3339_with_any_fraction() -> None:
    assert operation_seconds(op("2026-11-28T10:00:00Z", "2026-11-28T10:01:30.5Z")) == 90.5
    assert (
        abs(operation_seconds(op("1970-01-01T00:00:01.123456789Z", "1970-01-01T00:00:02Z")) - 0.876544) < 1e-6
    )
    assert operation_seconds(container_v1.Operation()) is None  # no times: nothing learned


def test_expect_is_the_shortest_seen_and_never_more_than_a_smaller_operation_took() -> None:
    d = Durations()
    assert d.expect("UpdateNodePool", 3) is None  # nothing known before the first operation of a kind ends
    d.learn("UpdateNodePool", 3, op("1970-01-01T00:00:00Z", "1970-01-01T00:02:30Z"))
    d.learn("UpdateNodePool", 3, op("1970-01-01T00:00:00Z", "1970-01-01T00:02:00Z"))
    d.learn("UpdateNodePool", 1, op("1970-01-01T00:00:00Z", "1970-01-01T00:01:30Z"))
    d.learn(
        "UpdateNodePool", 5, op("1970-01-01T00:00:00Z", "1970-01-01T00:00:10Z", error=True)
    )  # failed: ignored
    assert d.expect("UpdateNodePool", 3) == 120.0  # the shortest with 3 nodes
    assert d.expect("UpdateNodePool", 2) == 90.0  # only what at most 2 nodes took
    assert d.expect("UpdateNodePool", 10) == 120.0
    assert d.expect("UpdateNodePool", 0) is None
    assert d.expect("UpdateCluster/cluster_default", 0) is None  # kinds are apart
