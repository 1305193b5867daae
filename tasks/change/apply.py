"""Executing one planned change on GKE and waiting for its operation, safely.

Safety comes from reading before writing: before every send, wait out any operation already running on the
cluster (ours from a killed run, or someone else's), read the level again, and send only if it still differs,
built from the level's CURRENT whole kubelet config with one field changed. A mutation is never retried blindly:
a timeout may mean it landed, so the loop re-reads instead.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import container_v1

from config.schema import Rollout
from tasks.access.limits import mutation_slot
from tasks.access.retry import is_transient
from tasks.access.runtime import Runtime
from tasks.change.plan import Change, current_kubelet, current_port, with_port
from tasks.inventory.state import ClusterState, Level, Mode, cluster_state, kubelet_from_dict
from tasks.reporting import live
from tasks.reporting.report import utc_now

DONE = container_v1.Operation.Status.DONE
_TARGET = re.compile(r"/(?:locations|zones)/([^/]+)/clusters/([^/]+)")


class OperationTimeout(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"operation {name} did not finish in time; it is left running")
        self.name = name


def split_path(path: str) -> tuple[str, str, str]:
    parts = path.split("/")
    return parts[1], parts[3], parts[5]


def region_of(location: str) -> str:
    return location if location.count("-") < 2 else location.rsplit("-", 1)[0]


class OperationSlots:
    """Bounds on GKE operations in flight: the whole run, each project, each region."""

    def __init__(self, rollout: Rollout) -> None:
        self._global = threading.BoundedSemaphore(rollout.operations_in_flight)
        self._project: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(rollout.operations_per_project)
        )
        self._region: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(rollout.operations_per_region)
        )
        self._lock = threading.Lock()
        self._fleet = rollout.prefect_mutation_limit  # shared by every worker; None: no server round trip

    @contextmanager
    def slot(self, project: str, location: str) -> Iterator[None]:
        with self._lock:
            proj, region = self._project[project], self._region[region_of(location)]
        # Narrowest first: a cluster waiting for its project's slot holds no run-wide slot meanwhile.
        with proj, region, self._global, mutation_slot(self._fleet):
            yield


class Durations:
    """How long GKE's operations take, learned during the run: per kind of operation and number of nodes it
    recreates, the shortest time seen from the call's answer to DONE (on our own clock: GKE's start and end times
    need not be on it, and a simulator's are in simulated time). The next such operation is first polled at 95%
    of that, then with the usual backoff: fewer GetOperation calls, and its end is seen sooner. A time seen is
    never shorter than the operation took, so the first look is before the end unless this one is quicker by
    more than a twentieth. Nothing is known before the first operation of a kind ends."""

    EARLY = 0.95

    def __init__(self) -> None:
        self._shortest: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def expect(self, kind: str, nodes: int) -> float | None:
        """When to look first: the longest of the shortest times seen for this kind with at most this many
        nodes (an operation recreating more nodes takes no less), less a twentieth."""
        with self._lock:
            seen = [d for (k, n), d in self._shortest.items() if k == kind and n <= nodes]
        return self.EARLY * max(seen) if seen else None

    def learn(self, kind: str, nodes: int, seconds: float, op: container_v1.Operation) -> None:
        if op.error and op.error.code:
            return
        with self._lock:
            key = (kind, nodes)
            self._shortest[key] = min(self._shortest.get(key, seconds), seconds)


def poll_delays(expect: float | None, base: float, cap: float) -> Iterator[float]:
    """Seconds to wait before the first look at an operation, then after each look that did not find it DONE.

    Without an expectation: look at once, then after `base`, growing by half each time up to `cap` (fewer calls
    for long operations). With one (`Durations.expect`, ~5% before the shortest such operation seen): first look
    then, then every half `base` while the operation is due (up to a fifth past `expect`: its end is seen sooner,
    for about two more calls), then back off as above.
    """
    first = expect if expect and expect > base else 0.0
    yield first
    elapsed, due_until, delay = first, 1.2 * first, base
    while True:
        if elapsed < due_until:
            step = base / 2
        else:
            step, delay = delay, min(delay * 1.5, max(base, cap))
        elapsed += step
        yield step


def operation_kind(state: ClusterState, level: str) -> tuple[str, int]:
    """What decides an operation's duration: its kind and the nodes it recreates."""
    if level.startswith(Level.NODE_POOL.value + "/"):
        return "UpdateNodePool", state.pool(level.split("/", 1)[1]).node_count
    if level == Level.AUTO_CONFIG.value and state.mode is Mode.AUTOPILOT:
        return "UpdateCluster/autopilot", sum(p.node_count for p in state.pools)
    return f"UpdateCluster/{level}", 0


@dataclass
class ChangeResult:
    level: str
    before: str
    after: str
    status: str  # applied | already | dry_run | failed | in_flight
    operation: str | None = None
    started: str | None = None
    ended: str | None = None
    attempts: int = 0
    error: str | None = None
    sent: dict[str, Any] | None = None
    # The cluster as read (after waiting out its operations) when this change was confirmed: the next change's
    # read-before-send, or the verification's read. Not part of the report.
    state: ClusterState | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None and k != "state"}


class Applier:
    """Runs changes for one run; `sleep` is injectable so tests need not wait."""

    def __init__(
        self, rt: Runtime, slots: OperationSlots, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.rt = rt
        self.cfg = rt.config.rollout
        self.slots = slots
        self.sleep = sleep
        self.durations = Durations()

    # ----- reads ----------------------------------------------------------------------------------------------

    def read(self, path: str) -> ClusterState:
        project = split_path(path)[0]
        msg = self.rt.caller.call(self.rt.clients.container.get_cluster, name=path)
        return cluster_state(project, msg)

    def running_operations(self, path: str) -> list[str]:
        """Names of operations not yet DONE on this cluster (from any caller, any earlier run)."""
        project, location, name = split_path(path)
        resp = self.rt.caller.call(
            self.rt.clients.container.list_operations, parent=f"projects/{project}/locations/{location}"
        )
        running = []
        for op in resp.operations:
            m = _TARGET.search(op.target_link or op.self_link)
            if op.status != DONE and m and m.group(1) == location and m.group(2) == name:
                running.append(f"projects/{project}/locations/{location}/operations/{op.name}")
        return running

    def wait(self, op_name: str, expect: float | None = None) -> container_v1.Operation:
        """Poll an operation until DONE, on `poll_delays`' schedule, until the per-operation timeout."""
        deadline = time.monotonic() + self.cfg.operation_timeout_seconds
        delays = poll_delays(expect, self.cfg.operation_poll_seconds, self.cfg.operation_poll_max_seconds)
        if first := next(delays):
            self.sleep(min(first, self.cfg.operation_timeout_seconds))
        while True:
            op = self.rt.caller.call(self.rt.clients.container.get_operation, name=op_name)
            if op.status == DONE:
                return op
            delay = next(delays)
            if time.monotonic() + delay > deadline:
                raise OperationTimeout(op_name)
            self.sleep(delay)

    def settle(self, path: str) -> None:
        for name in self.running_operations(path):
            self.wait(name)

    # ----- writes ---------------------------------------------------------------------------------------------

    def _send(self, path: str, level: str, kubelet: container_v1.NodeKubeletConfig) -> container_v1.Operation:
        container = self.rt.clients.container
        caller = self.rt.caller
        if level.startswith(Level.NODE_POOL.value + "/"):
            request = container_v1.UpdateNodePoolRequest(
                name=f"{path}/nodePools/{level.split('/', 1)[1]}", kubelet_config=kubelet
            )
            return caller.once(container.update_node_pool, request=request)
        if level == Level.CLUSTER_DEFAULT.value:
            update = container_v1.ClusterUpdate(desired_node_kubelet_config=kubelet)
        else:
            update = container_v1.ClusterUpdate(desired_node_pool_auto_config_kubelet_config=kubelet)
        return caller.once(
            container.update_cluster, request=container_v1.UpdateClusterRequest(name=path, update=update)
        )

    def apply(
        self, change: Change, dry_run: bool = False, settled: ClusterState | None = None
    ) -> ChangeResult:
        """Bring one level to `change.after`. `settled`: the cluster read just now after waiting out its
        operations (the previous change's confirmation), used instead of waiting and reading again at once."""
        result = ChangeResult(
            change.level, str(change.before), str(change.after), "dry_run" if dry_run else "failed"
        )
        if dry_run:
            result.sent = change.kubelet
            return result
        project, location, _ = split_path(change.cluster)
        op_failures = 0
        transient_failures = 0
        while True:
            if settled is not None:
                state, settled = settled, None
            else:
                try:
                    self.settle(change.cluster)  # never two operations on one cluster
                    state = self.read(change.cluster)
                except OperationTimeout as exc:
                    result.status, result.operation, result.error = "in_flight", exc.name, str(exc)
                    return result
            result.state = state
            if current_port(state, change.level) is change.after:
                result.status = "applied" if result.attempts else "already"
                result.ended = result.ended or utc_now()
                return result
            if (
                op_failures > self.cfg.operation_retries
                or transient_failures > self.rt.config.limits.max_attempts
            ):
                return result
            sent = with_port(current_kubelet(state, change.level), change.after)
            result.sent = sent
            result.attempts += 1
            result.started = utc_now()
            token = live.sending(change.cluster, change.level)  # raises once the run is interrupted
            try:
                with self.slots.slot(project, location):
                    op = self._send(change.cluster, change.level, kubelet_from_dict(sent))
                    result.operation = f"projects/{project}/locations/{location}/operations/{op.name}"
                    live.operation_started(token, result.operation)
                    kind = operation_kind(state, change.level)
                    answered = time.monotonic()
                    done = self.wait(result.operation, self.durations.expect(*kind))
                    self.durations.learn(*kind, time.monotonic() - answered, done)
                live.operation_ended(token)
            except OperationTimeout as exc:  # still running: stays registered as in flight
                result.status, result.error = "in_flight", str(exc)
                return result
            except gexc.FailedPrecondition as exc:  # another operation started first: wait for it, re-read
                live.operation_ended(token)
                result.error = f"{type(exc).__name__}: {exc.message}"
                transient_failures += 1
                self.sleep(self.cfg.operation_poll_seconds)
                continue
            except gexc.GoogleAPICallError as exc:
                live.operation_ended(token)  # refused, or its operation is waited on by the next settle()
                result.error = f"{type(exc).__name__}: {exc.message}"
                if not is_transient(exc):
                    return result
                transient_failures += 1
                self.sleep(
                    min(
                        self.rt.config.limits.backoff_max_seconds,
                        self.rt.config.limits.backoff_initial_seconds * 2**transient_failures,
                    )
                )
                continue
            result.ended = utc_now()
            if done.error and done.error.code:
                op_failures += 1
                result.error = f"operation {done.name} failed: {done.error.message or done.status_message}"
                continue
            result.error = None
