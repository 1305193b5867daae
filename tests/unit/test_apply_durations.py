"""How the applier learns when to look at an operation first (tasks/apply.Durations)."""

from __future__ import annotations

from google.cloud import container_v1

from tasks.change.apply import Durations, poll_delays

DONE = container_v1.Operation(status=container_v1.Operation.Status.DONE)
FAILED = container_v1.Operation(status=container_v1.Operation.Status.DONE, error={"code": 13, "message": "x"})


def test_first_look_is_just_before_the_shortest_seen_and_never_after_a_smaller_operation() -> None:
    d = Durations()
    assert d.expect("UpdateNodePool", 3) is None  # nothing known before the first operation of a kind ends
    d.learn("UpdateNodePool", 3, 150.0, DONE)
    d.learn("UpdateNodePool", 3, 120.0, DONE)
    d.learn("UpdateNodePool", 1, 90.0, DONE)
    d.learn("UpdateNodePool", 5, 10.0, FAILED)  # a failed operation says nothing about a good one
    assert d.expect("UpdateNodePool", 3) == 0.95 * 120.0  # the shortest with 3 nodes, less a twentieth
    assert d.expect("UpdateNodePool", 2) == 0.95 * 90.0  # only what at most 2 nodes took
    assert d.expect("UpdateNodePool", 10) == 0.95 * 120.0
    assert d.expect("UpdateNodePool", 0) is None
    assert d.expect("UpdateCluster/cluster_default", 0) is None  # kinds are apart


def _schedule(expect: float | None, n: int, base: float = 5.0, cap: float = 30.0) -> list[float]:
    delays = poll_delays(expect, base, cap)
    return [round(next(delays), 6) for _ in range(n)]


def test_without_expectation_look_at_once_then_back_off_to_the_cap() -> None:
    assert _schedule(None, 8) == [0.0, 5.0, 7.5, 11.25, 16.875, 25.3125, 30.0, 30.0]
    assert _schedule(4.0, 3) == [0.0, 5.0, 7.5]  # an expectation shorter than one poll changes nothing


def test_with_expectation_first_look_then_every_half_poll_while_due_then_back_off() -> None:
    # Due until 1.2 x 100 s = 120 s: looks at 100, 102.5, ... 120, then 125, 132.5, ...
    assert _schedule(100.0, 12) == [100.0] + [2.5] * 8 + [5.0, 7.5, 11.25]
