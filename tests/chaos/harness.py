"""The chaos harness shared by tests/chaos/ and bench/chaos.py.

A fleet served by gkesim with every fault of issue 8 at once (10% UNAVAILABLE and 2% DEADLINE_EXCEEDED on every
gRPC method, RESOURCE_EXHAUSTED past a per-project quota, 5% of operations ending in error, operations that never
finish, node reads that hang, an Autopilot probe whose pods never start), a `portcullis rollout` process killed
with SIGKILL at seeded moments and started again, and a verdict judged from the simulator's state and journal,
never from Portcullis's own report: what the report says is only checked against what the simulator saw.

The simulator runs in the calling process (its state survives the kills); Portcullis runs as a subprocess of
`python -m flows.cli`, as an operator would run it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.cloud import container_v1

from gkesim.fleet import PORT_FIELD, Fleet, port_of, version_tuple
from gkesim.spec import FaultSpec, FleetSpec

REPO = Path(__file__).resolve().parents[2]
MIN_VERSION = (1, 26, 4, 500)
CHAOS_RATES = {"UNAVAILABLE": 0.10, "DEADLINE_EXCEEDED": 0.02}
MUTATIONS = ("UpdateCluster", "UpdateNodePool")
PROBE_PREFIX = "portcullis-probe-"


def chaos_faults(
    seed: int,
    *,
    quota_per_minute: int | None,
    quota_window_seconds: float = 60.0,
    stuck: list[str],
    slow_nodes: list[str],
    never_start: list[str],
    failing: list[str] = (),
    failing_rate: float = 0.05,
) -> FaultSpec:
    """Every fault of issue 8 at once, seeded so a run replays the same fault sequence for the same calls."""
    return FaultSpec(
        seed=seed,
        error_rates={"*": dict(CHAOS_RATES)},
        quota_per_minute=quota_per_minute,
        quota_window_seconds=quota_window_seconds,
        failing_operation_rate=failing_rate,
        failing_operations=list(
            failing
        ),  # on top of the rate: these clusters' next operation fails, for sure
        stuck_operations=list(stuck),
        node_read_timeouts=list(slow_nodes),
        probe_pods_never_start=list(never_start),
    )


def portcullis_config(sim: Any, path: Path, **sections: dict[str, Any]) -> Path:
    """A config pointing at the simulator, tuned for faults: short timeouts, fast backoff, a large retry budget."""
    from flows.simcmd import sim_config

    data = sim_config(sim.endpoints, sim.fleet.spec, window_seconds=0.5)
    defaults = {
        "limits": {
            "call_timeout_seconds": 10,
            "max_attempts": 20,
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 2,
            "retry_budget": 200_000,
        },
        "scan": {
            "request_timeout_seconds": 2,
            "probe_start_timeout_seconds": 3,
            "probe_log_interval_seconds": 1,
        },
        "rollout": {"operation_poll_seconds": 0.05, "operation_timeout_seconds": 6, "operation_retries": 3},
    }
    for key in set(defaults) | set(sections):
        data[key] = {**data.get(key, {}), **defaults.get(key, {}), **sections.get(key, {})}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ----- what should happen, from the fleet description ------------------------------------------------------------


@dataclass
class Expect:
    path: str
    kind: str  # disable | untouched | stuck
    why: str
    targets: list[str] = field(default_factory=list)  # levels that must end explicitly disabled


def _old(version: str | None) -> bool:
    parsed = version_tuple(version or "")
    return parsed is None or parsed < MIN_VERSION


def expectations(spec: FleetSpec) -> dict[str, Expect]:
    """Per cluster: must it end disabled (and which levels), stay untouched (and why), or hang in flight?"""
    f = spec.faults
    out: dict[str, Expect] = {}
    for proj in spec.projects:
        if proj.state != "ACTIVE":
            continue
        for c in proj.clusters:
            path = f"projects/{proj.id}/locations/{c.location}/clusters/{c.name}"
            autopilot = c.mode == "autopilot"
            pools = c.pools or []
            usage = {p.usage for p in pools}
            eligible_pools = [p for p in pools if not _old(p.version or c.version) and p.status == "RUNNING"]
            if autopilot:
                targets = ["auto_config"]
                current = {"auto_config": c.autoconfig_port}
            else:
                targets = ["cluster_default"] + [f"node_pool/{p.name}" for p in eligible_pools]
                current = {
                    "cluster_default": c.default_port,
                    **{f"node_pool/{p.name}": p.port for p in pools},
                }
            needs = any(current[t] != "disabled" for t in targets)
            if not autopilot and c.nap and c.autoconfig_port == "enabled":
                needs = True  # not compliant: the plan leaves NAP alone, the cluster ends partial
            why = ""
            if c.status != "RUNNING":
                why = f"cluster is {c.status}"
            elif _old(c.version):
                why = "control plane too old or unreadable"
            elif not needs and all(current[t] == "disabled" for t in current):
                why = "already compliant"
            elif path in f.node_read_timeouts or any(
                f"{path}/{p.name}" in f.node_read_timeouts for p in pools
            ):
                why = "node reads hang: inconclusive"
            elif path in f.probe_pods_never_start:
                why = "probe pods never start: inconclusive"
            elif path in f.wrong_ca or path in f.forbidden_node_proxy:
                why = "cannot read nodes: inconclusive"
            elif autopilot and not c.workloads:
                why = "empty Autopilot cluster: inconclusive"
            elif usage & {"in_use", "used_before"}:
                why = "port 10255 read on some node: blocked"
            if why:
                out[path] = Expect(path, "untouched", why)
            elif path in f.stuck_operations and needs:
                out[path] = Expect(path, "stuck", "its operations never finish", targets)
            else:
                out[path] = Expect(path, "disable", "eligible and clear", targets)
    return out


# ----- running Portcullis, and killing it -------------------------------------------------------------------------


@dataclass
class Kill:
    run: int
    trigger: str
    after_seconds: float
    accepted_before: int
    operations_running: int
    probe_objects_live: int


@dataclass
class Outcome:
    kills: list[Kill]
    runs: int
    final_report: dict[str, Any]
    final_exit: int
    wall_seconds: float
    run_seconds: list[float]
    retries_reported: int  # by runs that finished (a SIGKILLed run reports nothing)
    calls: Counter[str]


def accepted(fleet: Fleet) -> int:
    return sum(1 for e in fleet.journal if e.method in MUTATIONS and e.result.startswith("accepted"))


def probe_creates(fleet: Fleet) -> int:
    return sum(1 for e in fleet.journal if e.method == "k8s.create" and e.detail.get("kind") == "DaemonSet")


def running_operations(fleet: Fleet) -> list[str]:
    with fleet.lock:
        return [
            p for p, op in fleet.operations.items() if op.msg.status != container_v1.Operation.Status.DONE
        ]


def count_calls(fleet: Fleet) -> Counter[str]:
    """Count every Container and Resource Manager call the simulator answers (wraps the fault injector)."""
    calls: Counter[str] = Counter()
    check = fleet.faults.check

    def counted(method: str, project: str | None = None) -> None:
        calls[method] += 1
        check(method, project)

    fleet.faults.check = counted  # type: ignore[method-assign]
    return calls


def rollout_cmd(config: Path, report: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flows.cli",
        "rollout",
        "--yes",
        "--config",
        str(config),
        "--report",
        str(report),
    ]


def run_chaos(
    sim: Any,
    config: Path,
    workdir: Path,
    *,
    kills: int,
    seed: int,
    env: dict[str, str] | None = None,
    kinds: list[str] | None = None,
    mutation_steps: tuple[int, int] = (1, 6),
    time_window: tuple[float, float] = (8.0, 30.0),
    kill_cap_seconds: float = 90.0,
    final_timeout: float = 600.0,
    log: Any = None,
) -> Outcome:
    """Start `portcullis rollout`, SIGKILL it `kills` times at seeded moments, then let one run finish.

    Each kill waits for a seeded trigger: `mutations` (`mutation_steps` more mutations accepted), `probe` (an
    Autopilot probe being set up: its objects are in the cluster) or `time` (`time_window` seconds after the
    start); `kinds` fixes the order of triggers, otherwise they are drawn. A trigger not reached by
    `kill_cap_seconds` kills at the cap.
    """
    rng = random.Random(seed)
    fleet = sim.fleet
    calls = count_calls(fleet)
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    done_kills: list[Kill] = []
    run_seconds: list[float] = []
    retries = 0
    t0 = time.monotonic()
    run = 0
    while True:
        run += 1
        report = workdir / f"run{run}.json"
        last = len(done_kills) >= kills
        with open(workdir / f"run{run}.log", "wb") as out:
            proc = subprocess.Popen(
                rollout_cmd(config, report), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            started = time.monotonic()
            if last:
                try:
                    code = proc.wait(timeout=final_timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    raise AssertionError(f"the final run did not end within {final_timeout:.0f}s") from None
                run_seconds.append(time.monotonic() - started)
                final = json.loads(report.read_text())
                retries += int(final.get("summary", {}).get("retries", 0))
                return Outcome(
                    done_kills, run, final, code, time.monotonic() - t0, run_seconds, retries, calls
                )
            kind = rng.choice(("mutations", "mutations", "probe", "time"))
            if kinds:
                kind = kinds[(run - 1) % len(kinds)]
            base_acc, base_probe = accepted(fleet), probe_creates(fleet)
            step = rng.randint(*mutation_steps)
            delay = rng.uniform(*time_window)
            label = {"mutations": f"{step} more mutation(s) accepted", "probe": "a probe being set up",
                     "time": f"{delay:.1f}s after start"}[kind]  # fmt: skip
            while proc.poll() is None:
                elapsed = time.monotonic() - started
                hit = (
                    (kind == "mutations" and accepted(fleet) >= base_acc + step)
                    or (kind == "probe" and probe_creates(fleet) > base_probe)
                    or (kind == "time" and elapsed >= delay)
                )
                if hit or elapsed >= kill_cap_seconds:
                    if not hit:
                        label += f" (not reached: killed at the {kill_cap_seconds:.0f}s cap)"
                    with fleet.lock:
                        live_probes = len(probe_objects(fleet, finalize=False))
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    done_kills.append(
                        Kill(run, label, round(elapsed, 2), accepted(fleet), len(running_operations(fleet)),
                             live_probes)
                    )  # fmt: skip
                    if log:
                        log(f"run {run}: SIGKILL after {elapsed:.1f}s ({label})")
                    break
                time.sleep(0.02)
            run_seconds.append(time.monotonic() - started)
            if proc.returncode is not None and proc.returncode >= 0 and report.exists():
                # ended before the kill moment: count its retries, start again for the next kill
                retries += int(json.loads(report.read_text()).get("summary", {}).get("retries", 0))
                if log:
                    log(f"run {run} ended (exit {proc.returncode}) before its kill moment ({label})")


# ----- judging, from the simulator only ---------------------------------------------------------------------------


def probe_objects(fleet: Fleet, finalize: bool = True) -> list[str]:
    """Every probe object still in any cluster's KubeStore (a Terminating namespace counts until it is gone)."""
    left = []
    with fleet.lock:
        for cluster in fleet.clusters.values():
            store = cluster.kube
            if store is None:
                continue
            if finalize:
                store._finalize_namespaces()
            for plural, objs in store.objects.items():
                for (ns, name), _ in objs.items():
                    if name.startswith(PROBE_PREFIX) or ns.startswith(PROBE_PREFIX):
                        left.append(f"{cluster.path}/{plural}/{ns}/{name}")
    return left


def _level_port(fleet: Fleet, path: str, level: str) -> str:
    msg = fleet.clusters[path].msg
    if level == "cluster_default":
        d = msg.node_pool_defaults.node_config_defaults
        return port_of(d.node_kubelet_config if "node_kubelet_config" in d else None)
    if level == "auto_config":
        a = msg.node_pool_auto_config
        return port_of(a.node_kubelet_config if "node_kubelet_config" in a else None)
    pool = fleet.clusters[path].pool(level.split("/", 1)[1])
    return port_of(pool.config.kubelet_config if "kubelet_config" in pool.config else None)


def touched(fleet: Fleet) -> dict[str, list[str]]:
    """Cluster path -> the mutations the simulator accepted for it."""
    out: dict[str, list[str]] = {}
    for e in fleet.journal:
        if e.method in MUTATIONS and e.result.startswith("accepted"):
            out.setdefault(e.target.split("/nodePools/")[0], []).append(e.result.split()[1])
    return out


def judge(sim: Any, report: dict[str, Any], expect: dict[str, Expect]) -> dict[str, Any]:
    """Everything issue 8 requires, from the simulator's state and journal. `problems` must be empty."""
    fleet = sim.fleet
    # Let every finite operation end and every Terminating namespace go (stuck operations never end).
    fleet.clock._t0 -= 3600 * fleet.clock.time_scale
    inv = fleet.invariant_report()
    problems: list[str] = []
    for key in ("conflicts", "breakage", "duplicates", "lost_settings"):
        if inv[key]:
            problems.append(f"{key}: {inv[key][:3]}")
    leftovers = probe_objects(fleet)
    if leftovers:
        problems.append(f"probe objects left behind: {leftovers[:5]}")

    rows = report.get("clusters", [])
    paths = [r["cluster"] for r in rows]
    dupes = sorted(p for p, n in Counter(paths).items() if n > 1)
    if dupes:
        problems.append(f"the final report lists clusters more than once: {dupes[:5]}")
    missing = sorted(set(expect) - set(paths))
    if missing:
        problems.append(f"the final report does not account for: {missing[:5]}")
    extra = sorted(set(paths) - set(expect))
    if extra:
        problems.append(f"the final report lists clusters that are not in scope: {extra[:5]}")
    by_path = {r["cluster"]: r for r in rows}
    changed = touched(fleet)
    stuck_ops = {
        op.cluster: op.path
        for op in fleet.operations.values()
        if op.msg.status != container_v1.Operation.Status.DONE
    }
    counts: Counter[str] = Counter()
    for path, e in expect.items():
        row = by_path.get(path, {})
        outcome = row.get("outcome")
        counts[f"{e.kind}:{outcome}"] += 1
        if e.kind == "untouched":
            if path in changed:
                problems.append(f"{path} ({e.why}) was changed: {changed[path]}")
            if outcome not in ("blocked", "not_eligible", "skipped", "already_compliant", "partial"):
                problems.append(f"{path} ({e.why}) reported {outcome!r}")
            if not row.get("reason"):
                problems.append(f"{path} ({e.why}) has no reason in the report")
        elif e.kind == "disable":
            wrong = {lvl: _level_port(fleet, path, lvl) for lvl in e.targets}
            wrong = {lvl: s for lvl, s in wrong.items() if s != "disabled"}
            if wrong:
                problems.append(
                    f"{path} should be disabled but the simulator has {wrong} (report: {outcome})"
                )
            cluster = fleet.clusters[path]
            pools = None if cluster.autopilot else {t.split("/", 1)[1] for t in e.targets if "/" in t}
            open_nodes = [
                n.name for n in cluster.all_nodes() if n.port_open and (pools is None or n.pool in pools)
            ]
            if open_nodes:
                problems.append(f"{path}: nodes still run with port 10255 open: {open_nodes[:3]}")
            if outcome not in ("verified", "already_compliant", "partial"):
                problems.append(f"{path} ended disabled in the simulator but the report says {outcome!r}")
        else:  # stuck
            op = stuck_ops.get(path)
            if op is None:
                problems.append(f"{path}: expected an operation that never finishes, the simulator has none")
            elif outcome != "in_flight" or op.rsplit("/", 1)[1] not in json.dumps(row):
                problems.append(f"{path}: operation {op} never finished but the report says {outcome!r}")
    for path, op in stuck_ops.items():
        if expect.get(path) and expect[path].kind != "stuck":
            problems.append(f"{path}: operation {op} is still running")
    return {
        "problems": problems,
        "invariants": {k: (len(v) if isinstance(v, list) else v) for k, v in inv.items()},
        "faults_injected": inv["faults_injected"],
        "faults_total": sum(inv["faults_injected"].values()),
        "categories": dict(sorted(counts.items())),
        "in_flight": dict(sorted(stuck_ops.items())),  # cluster -> operation that never finished
    }


def categories(expect: dict[str, Expect]) -> Counter[str]:
    return Counter(e.kind for e in expect.values())


def port_disabled(fleet: Fleet, path: str) -> bool:
    """Every level of the cluster explicitly disabled (helper for tests)."""
    cluster = fleet.clusters[path]
    levels = ["auto_config"] if cluster.autopilot else ["cluster_default"] + [
        f"node_pool/{p.name}" for p in cluster.msg.node_pools
    ]  # fmt: skip
    return all(_level_port(fleet, path, lvl) == "disabled" for lvl in levels)


__all__ = [
    "PORT_FIELD",
    "Expect",
    "Kill",
    "Outcome",
    "chaos_faults",
    "expectations",
    "judge",
    "portcullis_config",
    "probe_objects",
    "run_chaos",
]
