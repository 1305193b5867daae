"""How the applier learns when to look at an operation first (tasks/apply.Durations)."""

from __future__ import annotations

from google.cloud import container_v1

from tasks.apply import Durations

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
