"""The seed's manual procedure for a whole fleet, timed against Portcullis on a fresh copy of the same fleet.

The manual process is what an operator (or one of the public shell scanners) does with the seed document: one
command at a time, the real gcloud and kubectl, against the simulator's REST and Kubernetes front ends.

    for each project:  gcloud container clusters list --project P --format=json
    for each cluster (control plane >= 1.26.4-gke.500, RUNNING):
        kubectl config use-context CLUSTER            (stands in for `gcloud container clusters get-credentials`)
        usage check, as the seed says:
          Standard:  per node pool, one node:  kubectl get nodes -l cloud.google.com/gke-nodepool=POOL ...
                                               kubectl get --raw /api/v1/nodes/NODE/proxy/metrics | grep ... | grep readonly
          Autopilot: kubectl create -f read-only-port-metrics.yaml; wait for the DaemonSet; kubectl logs ...;
                     kubectl delete -f read-only-port-metrics.yaml
        any server_type="readonly" line: leave the cluster alone (its workloads must be migrated first)
        disable, skipping a level the listing already shows as explicitly false:
          Autopilot: gcloud container clusters update C --location=L --no-autoprovisioning-enable-insecure-kubelet-readonly-port
          Standard:  gcloud container clusters update C --location=L --no-enable-insecure-kubelet-readonly-port
                     gcloud container node-pools update POOL --cluster=C --location=L --no-enable-insecure-kubelet-readonly-port
                     (each pool whose version is >= 1.26.4-gke.500)
        verify with the seed's three `describe ... --format="value(...)"` commands

The command strings are the seed's, from tests/seed/seed_commands.py. Then `portcullis rollout --yes` (its default
wave progression, soak 0 as in the simulator config) runs on fresh copies of the same generated fleet (twice by
default; the median counts), against a `prefect server start` the bench starts beforehand and does not time, as
gcloud's installation is not timed for the manual side (`--ephemeral-prefect`: no server, each run starts a
temporary one and pays for it).

The manual process takes roughly half a minute per cluster, so by default it runs on a stratified random sample of
clusters and the whole-fleet time is extrapolated per cluster category; the output says so. `--sample 0` runs the
manual process on every cluster (over an hour for 200 clusters).

Fairness notes, printed with the results:
- Operations are scaled (`--time-scale`, default 0.02: a 60 s cluster update takes 1.2 s). gcloud polls a running
  operation every 5 s, unscaled, so each gcloud update waits up to 5 s longer than its operation; the output gives
  the manual time with that slack removed as well. Portcullis runs with the configuration `portcullis sim
  --config-out` writes (operations polled from 0.2 s with back-off, a 2 s usage window, no soak between waves).
- The manual operator gets kubeconfig contexts for free (no get-credentials) and reads the project list from the
  fleet (no `gcloud projects list`).
- kubectl is gcloud's 1.32 build for every cluster (`--kubectl`; `--kubectl dispatcher` runs the version-matched
  builds as an operator's gcloud does: the 1.27/1.28 ones fetch the OpenAPI documents before each `kubectl create`,
  which only makes the manual process slower, so the pinned build is the conservative baseline).

    .venv/bin/python bench/manual_baseline.py [--clusters 200 --projects 40 --sample 20 --time-scale 0.02]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.simcmd import sim_config  # noqa: E402
from gkesim import kube as gkesim_kube  # noqa: E402
from gkesim.fleet import Fleet, port_of, supports_port_setting  # noqa: E402
from gkesim.generate import generate_fleet  # noqa: E402
from gkesim.kube import write_kubeconfig  # noqa: E402
from gkesim.rest import gcloud_env  # noqa: E402
from gkesim.server import Simulator  # noqa: E402
from gkesim.spec import FleetSpec  # noqa: E402
from tests.seed.seed_commands import (  # noqa: E402
    AUTOPILOT_CREATE,
    AUTOPILOT_DELETE,
    AUTOPILOT_DISABLE,
    AUTOPILOT_LOGS,
    AUTOPILOT_VERIFY,
    MANIFEST,
    POOL_DISABLE,
    POOL_VERIFY,
    STANDARD_CHECK,
    STANDARD_DISABLE,
    STANDARD_VERIFY,
    fill,
)

DS_STATUS = (
    "kubectl get daemonset node-metrics-printer --namespace=node-metrics-printer-namespace "
    "-o jsonpath='{.status.numberReady}/{.status.desiredNumberScheduled}'"
)


# ----- counting what each side sends ------------------------------------------------------------------------------


class CallCounter:
    """Google API calls (Container and Resource Manager, gRPC or REST) and Kubernetes API requests per fleet."""

    def __init__(self) -> None:
        self.google: dict[int, Counter[str]] = defaultdict(Counter)
        self.kube: Counter[int] = Counter()
        self.span: dict[int, list[float]] = defaultdict(lambda: [math.inf, 0.0])  # first and last Google call
        self._lock = threading.Lock()
        original = gkesim_kube._Handler._dispatch
        counter = self

        def dispatch(handler: Any, method: str) -> None:
            with counter._lock:
                counter.kube[id(handler.server.kube.fleet)] += 1
            original(handler, method)

        gkesim_kube._Handler._dispatch = dispatch  # this process only

    def watch(self, fleet: Fleet) -> None:
        delay = fleet.faults.delay
        calls = self.google[id(fleet)]

        span = self.span[id(fleet)]

        def counted(method: str) -> None:
            now = time.perf_counter()
            with self._lock:
                calls[method] += 1
                span[0] = min(span[0], now)
                span[1] = max(span[1], now)
            delay(method)

        fleet.faults.delay = counted  # type: ignore[method-assign]

    def summary(self, fleet: Fleet) -> dict[str, Any]:
        google = self.google[id(fleet)]
        return {"google_api_calls": sum(google.values()), "by_method": dict(sorted(google.items())),
                "kubernetes_requests": self.kube[id(fleet)]}  # fmt: skip


# ----- the manual operator ----------------------------------------------------------------------------------------


@dataclass
class Command:
    tool: str
    command: str
    seconds: float
    returncode: int
    cluster: str | None = None
    operation_seconds: float | None = None  # for gcloud updates: how long the operation itself ran


@dataclass
class ClusterLog:
    path: str
    mode: str
    category: str
    action: str = ""  # disabled / in_use / not_eligible / check_failed / error
    seconds: float = 0.0
    commands: int = 0
    verify: dict[str, str] = field(default_factory=dict)


class Operator:
    def __init__(
        self, sim: Simulator, workdir: Path, time_scale: float, kubectl_dir: Path | None = None
    ) -> None:
        self.sim = sim
        self.time_scale = time_scale
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(MANIFEST, workdir / MANIFEST.name)
        kubeconfig = write_kubeconfig(sim.fleet, workdir / "kubeconfig", sim.host, sim.kube.port, sim.TOKEN)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "KUBECONFIG"))}
        self.env.update(gcloud_env(sim.endpoints.rest, workdir / "gcloud"))
        self.env["KUBECONFIG"] = str(kubeconfig)
        if kubectl_dir is not None:
            self.env["PATH"] = f"{kubectl_dir}{os.pathsep}{self.env.get('PATH', '')}"
        self.commands: list[Command] = []

    def sh(
        self, command: str, cluster: str | None = None, project: str | None = None
    ) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if project:
            env["CLOUDSDK_CORE_PROJECT"] = project
        seen_ops = len(self.sim.fleet.operations)
        t0 = time.perf_counter()
        proc = subprocess.run(["sh", "-c", command], cwd=self.workdir, env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        seconds = time.perf_counter() - t0
        op_seconds = None
        if " update " in command:
            ops = list(self.sim.fleet.operations.values())[seen_ops:]
            if ops and math.isfinite(ops[0].end_at):
                started = dt.datetime.fromisoformat(ops[0].msg.start_time.replace("Z", "+00:00")).timestamp()
                op_seconds = (ops[0].end_at - (started - Fleet.EPOCH)) * self.time_scale
        tool = command.split()[0]
        self.commands.append(Command(tool, command, seconds, proc.returncode, cluster, op_seconds))
        return proc

    def run_project(self, project: str) -> list[dict[str, Any]]:
        proc = self.sh(f"gcloud container clusters list --project {project} --format=json", project=project)
        if proc.returncode != 0:
            print(f"  ! list {project}: {proc.stderr.strip()[:200]}", flush=True)
            return []
        return json.loads(proc.stdout or "[]")

    def run_cluster(self, project: str, cluster: dict[str, Any], log: ClusterLog) -> None:
        t0 = time.perf_counter()
        before = len(self.commands)
        try:
            log.action = self._cluster(project, cluster, log)
        finally:
            log.seconds = time.perf_counter() - t0
            log.commands = len(self.commands) - before

    def _cluster(self, project: str, c: dict[str, Any], log: ClusterLog) -> str:
        name, location, path = c["name"], c["location"], log.path
        names = {"CLUSTER_NAME": name, "LOCATION": location}
        autopilot = bool((c.get("autopilot") or {}).get("enabled"))
        if c.get("status") != "RUNNING" or not supports_port_setting(c.get("currentMasterVersion", "")):
            return "not_eligible"
        self.sh(f"kubectl config use-context {path}", path)
        # usage check
        if autopilot:
            in_use = self._autopilot_check(path)
        else:
            in_use = False
            for pool in c.get("nodePools", []):
                node = self.sh(
                    f"kubectl get nodes -l cloud.google.com/gke-nodepool={pool['name']} "
                    "-o jsonpath='{.items[0].metadata.name}'",
                    path,
                ).stdout.strip()
                if not node:
                    continue
                check = self.sh(fill(STANDARD_CHECK, NODE_NAME=node), path)
                if check.returncode not in (0, 1) or (check.returncode == 1 and check.stderr.strip()):
                    return "check_failed"
                if 'server_type="readonly"' in check.stdout:
                    in_use = True
                    break  # one pool in use is enough to stop: migrate first
        if in_use is None:
            return "check_failed"
        if in_use:
            return "in_use"
        # disable
        failed = False
        if autopilot:
            current = (c.get("nodePoolAutoConfig") or {}).get("nodeKubeletConfig") or {}
            if current.get("insecureKubeletReadonlyPortEnabled") is not False:
                failed |= self.sh(fill(AUTOPILOT_DISABLE, **names), path, project).returncode != 0
        else:
            defaults = (((c.get("nodePoolDefaults") or {}).get("nodeConfigDefaults") or {})
                        .get("nodeKubeletConfig") or {})  # fmt: skip
            if defaults.get("insecureKubeletReadonlyPortEnabled") is not False:
                failed |= self.sh(fill(STANDARD_DISABLE, **names), path, project).returncode != 0
            for pool in c.get("nodePools", []):
                kubelet = (pool.get("config") or {}).get("kubeletConfig") or {}
                if kubelet.get("insecureKubeletReadonlyPortEnabled") is False:
                    continue
                if not supports_port_setting(pool.get("version", "")):
                    continue  # the seed's requirement: the pool must be upgraded first
                cmd = fill(POOL_DISABLE, NODE_POOL_NAME=pool["name"], **names)
                failed |= self.sh(cmd, path, project).returncode != 0
        # verify
        if autopilot:
            log.verify["auto-config"] = self.sh(fill(AUTOPILOT_VERIFY, **names), path, project).stdout.strip()
        else:
            log.verify["cluster default"] = self.sh(
                fill(STANDARD_VERIFY, **names), path, project
            ).stdout.strip()
            for pool in c.get("nodePools", []):
                cmd = fill(POOL_VERIFY, NODE_POOL_NAME=pool["name"], **names)
                log.verify[pool["name"]] = self.sh(cmd, path, project).stdout.strip()
        return "error" if failed else "disabled"

    def _autopilot_check(self, path: str) -> bool | None:
        if self.sh(AUTOPILOT_CREATE, path).returncode != 0:
            return None
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # wait until every printer pod runs
                ready, _, desired = self.sh(DS_STATUS, path).stdout.strip().partition("/")
                if desired and desired != "0" and ready == desired:
                    break
                time.sleep(1.0)
            # one print interval (20 simulated seconds) so every pod has printed once
            time.sleep(20 * self.time_scale)
            while time.monotonic() < deadline:
                logs = self.sh(AUTOPILOT_LOGS, path)
                if logs.returncode == 0 and "kubelet_http_requests_total" in logs.stdout:
                    return 'server_type="readonly"' in logs.stdout
                time.sleep(1.0)
            return None
        finally:
            self.sh(AUTOPILOT_DELETE, path)


def pin_kubectl(version: str, work: Path) -> Path | None:
    """A directory whose `kubectl` is gcloud's kubectl.VERSION build, or None to use the `kubectl` on PATH.

    gcloud's `kubectl` is a dispatcher that runs the build matching the server's minor version. The 1.27 and 1.28
    builds fetch the whole OpenAPI v2 document (protobuf) and the v3 documents before `kubectl create`: one build
    for every cluster keeps the baseline's kubectl cost the same everywhere (and lower, never higher).
    """
    if version == "dispatcher":
        return None
    found = shutil.which("kubectl")
    if found is None:
        return None
    build = Path(found).resolve().with_name(f"kubectl.{version}")
    if not build.exists():
        return None
    pinned = work / "kubectl-bin"
    pinned.mkdir(parents=True, exist_ok=True)
    (pinned / "kubectl").symlink_to(build)
    return pinned


class PrefectServer:
    """`prefect server start` in its own process group and PREFECT_HOME, as Portcullis runs in production."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.start_seconds = 0.0

    def start(self, timeout: float = 300.0) -> str:
        import socket
        import urllib.request

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_SERVER_UI_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")  # fmt: skip
        prefect = Path(sys.executable).with_name("prefect")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{port}/api"
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server start exited {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        self.start_seconds = time.perf_counter() - t0
                        return self.url
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("prefect server did not answer in time")

    def stop(self) -> None:
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        for sig in (signal.SIGINT, signal.SIGINT, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)  # the group this process started, nothing else
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=15)
                return
            except subprocess.TimeoutExpired:
                continue


# ----- the fleet's end state --------------------------------------------------------------------------------------


def end_state(fleet: Fleet) -> dict[str, dict[str, Any]]:
    """Per cluster: is the port explicitly disabled at every level the seed covers, and on how many nodes open."""
    out = {}
    fleet.settle_all()
    with fleet.lock:
        for path, c in fleet.clusters.items():
            if c.autopilot:
                levels = {
                    "auto-config": port_of(
                        c.msg.node_pool_auto_config.node_kubelet_config
                        if "node_kubelet_config" in c.msg.node_pool_auto_config
                        else None
                    )
                }
            else:
                npd = c.msg.node_pool_defaults.node_config_defaults
                levels = {
                    "cluster default": port_of(
                        npd.node_kubelet_config if "node_kubelet_config" in npd else None
                    )
                }
                for p in c.msg.node_pools:
                    levels[p.name] = port_of(
                        p.config.kubelet_config if "kubelet_config" in p.config else None
                    )
            out[path] = {
                "disabled": all(v == "disabled" for v in levels.values()),
                "levels": levels,
                "open_nodes": sum(1 for n in c.all_nodes() if n.port_open),
            }  # fmt: skip
    return out


def category(fleet: Fleet, path: str) -> str:
    """What the manual operator ends up doing with a cluster, known from the fleet's spec (for stratifying)."""
    c = fleet.clusters[path]
    mode = "autopilot" if c.autopilot else "standard"
    if not supports_port_setting(c.msg.current_master_version) or c.msg.status.name != "RUNNING":
        return f"{mode}/not_eligible"
    usage = [base > 0 or rate > 0 for base, rate in c.usage.values()]
    if any(usage):
        return f"{mode}/in_use_or_used_before"
    return f"{mode}/disable"


def stratified_sample(fleet: Fleet, size: int, seed: int) -> list[str]:
    by_cat: dict[str, list[str]] = defaultdict(list)
    for path in sorted(fleet.clusters):
        by_cat[category(fleet, path)].append(path)
    rng = random.Random(seed)
    total = len(fleet.clusters)
    alloc = {cat: max(1, round(size * len(paths) / total)) for cat, paths in by_cat.items()}
    while sum(alloc.values()) > size and any(v > 1 for v in alloc.values()):
        biggest = max(alloc, key=lambda k: alloc[k])
        alloc[biggest] -= 1
    sample = []
    for cat, paths in sorted(by_cat.items()):
        sample += rng.sample(paths, min(alloc[cat], len(paths)))
    return sorted(sample)


# ----- the two runs -----------------------------------------------------------------------------------------------


def run_manual(spec: FleetSpec, args: argparse.Namespace, counter: CallCounter, work: Path) -> dict[str, Any]:
    sim = Simulator.from_spec(spec, time_scale=args.time_scale)
    sim.start()
    counter.watch(sim.fleet)
    try:
        fleet = sim.fleet
        everything = args.sample == 0
        sample = set(fleet.clusters) if everything else set(stratified_sample(fleet, args.sample, args.seed))
        operator = Operator(sim, work / "manual", args.time_scale, pin_kubectl(args.kubectl, work))
        logs: list[ClusterLog] = []
        t0 = time.perf_counter()
        list_seconds = 0.0
        projects = [p for p in fleet.projects.values() if p.state == "ACTIVE"]
        print(f"manual: {len(projects)} projects to list, {len(sample)} clusters to work through", flush=True)
        for proj in projects:
            t_list = time.perf_counter()
            listed = operator.run_project(proj.project_id)
            list_seconds += time.perf_counter() - t_list
            for c in listed:
                path = f"projects/{proj.project_id}/locations/{c['location']}/clusters/{c['name']}"
                if path not in sample:
                    continue
                log = ClusterLog(path, "autopilot" if fleet.clusters[path].autopilot else "standard",
                                 category(fleet, path))  # fmt: skip
                operator.run_cluster(proj.project_id, c, log)
                logs.append(log)
                print(f"  {len(logs):3d}/{len(sample)} {log.action:12s} {log.seconds:6.1f}s {log.commands:3d} cmds"
                      f"  {path}", flush=True)  # fmt: skip
        wall = time.perf_counter() - t0
        state = end_state(fleet)
        report = fleet.invariant_report()
        cmds = operator.commands
        updates = [c for c in cmds if c.operation_seconds is not None]
        plain_gcloud = [c.seconds for c in cmds if c.tool == "gcloud" and c.operation_seconds is None]
        overhead = statistics.median(plain_gcloud) if plain_gcloud else 0.0
        slack = sum(max(0.0, c.seconds - c.operation_seconds - overhead) for c in updates)
        return {
            "sim": sim, "fleet": fleet, "sample": sorted(sample), "clusters": logs, "wall_seconds": wall,
            "list_seconds": list_seconds, "projects_listed": len(projects), "commands": cmds,
            "commands_by_tool": dict(Counter(c.tool for c in cmds)), "poll_slack_seconds": slack,
            "gcloud_overhead_seconds": overhead, "state": state, "invariants": report,
            "calls": counter.summary(fleet),
        }  # fmt: skip
    finally:
        sim.stop()


def run_portcullis(
    spec: FleetSpec, args: argparse.Namespace, counter: CallCounter, work: Path
) -> dict[str, Any]:
    sim = Simulator.from_spec(spec, time_scale=args.time_scale)
    endpoints = sim.start()
    counter.watch(sim.fleet)
    try:
        cfg = sim_config(endpoints, spec)  # what `portcullis sim --config-out` writes
        config = work / "portcullis.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        report_path = work / "rollout.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(work / "prefect"), PREFECT_LOGGING_LEVEL="WARNING",
                   PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(work / "prefect" / "results"))  # fmt: skip
        if args.prefect_api_url:
            env["PREFECT_API_URL"] = args.prefect_api_url
        cli = Path(sys.executable).with_name("portcullis")
        argv = [str(cli)] if cli.exists() else [sys.executable, "-m", "flows.cli"]
        print("portcullis: rollout --yes on a fresh copy of the fleet", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([*argv, "rollout", "--yes", "--config", str(config), "--report", str(report_path)],
                              env=env, capture_output=True, text=True, timeout=3600)  # fmt: skip
        end = time.perf_counter()
        wall = end - t0
        first, last = counter.span[id(sim.fleet)]
        (work / "portcullis.stdout").write_text(proc.stdout)
        (work / "portcullis.stderr").write_text(proc.stderr)
        rollout = json.loads(report_path.read_text()) if report_path.exists() else {}
        return {
            "sim": sim, "fleet": sim.fleet, "wall_seconds": wall, "returncode": proc.returncode,
            "startup_seconds": first - t0, "working_seconds": last - first, "finish_seconds": end - last,
            "load_average": os.getloadavg(),
            "outcomes": (rollout.get("summary") or {}).get("outcome", {}),
            "wave_of": {
                f"projects/{c['project']}/locations/{c['location']}/clusters/{c['name']}": c.get("wave")
                for c in rollout.get("clusters", [])
            },
            "per_cluster": {f"projects/{c['project']}/locations/{c['location']}/clusters/{c['name']}": c["outcome"]
                            for c in rollout.get("clusters", [])},
            "state": end_state(sim.fleet), "invariants": sim.fleet.invariant_report(),
            "calls": counter.summary(sim.fleet),
        }  # fmt: skip
    finally:
        sim.stop()


# ----- the comparison ---------------------------------------------------------------------------------------------


def extrapolate(manual: dict[str, Any], fleet: Fleet) -> dict[str, Any]:
    """Whole-fleet manual time and commands: per-category means over the sample, times each category's size."""
    logs: list[ClusterLog] = manual["clusters"]
    by_cat: dict[str, list[ClusterLog]] = defaultdict(list)
    for log in logs:
        by_cat[log.category].append(log)
    sizes = Counter(category(fleet, p) for p in fleet.clusters)
    mode_mean = {
        m: statistics.mean([cl.seconds for cl in logs if cl.mode == m] or [0.0])
        for m in ("standard", "autopilot")
    }
    seconds = commands = 0.0
    rows = []
    for cat, n in sorted(sizes.items()):
        seen = by_cat.get(cat, [])
        mean_s = statistics.mean(cl.seconds for cl in seen) if seen else mode_mean[cat.split("/")[0]]
        mean_c = statistics.mean(cl.commands for cl in seen) if seen else 0.0
        seconds += n * mean_s
        commands += n * mean_c
        rows.append({"category": cat, "clusters": n, "sampled": len(seen), "mean_seconds": mean_s,
                     "mean_commands": mean_c})  # fmt: skip
    slack_per_cluster = manual["poll_slack_seconds"] / max(1, len(logs))
    total = manual["list_seconds"] + seconds
    return {
        "rows": rows,
        "seconds": total,
        "seconds_without_poll_slack": total - slack_per_cluster * len(fleet.clusters),
        "commands": manual["projects_listed"] + commands,
        "simple_mean_seconds": manual["list_seconds"]
        + statistics.mean(cl.seconds for cl in logs) * len(fleet.clusters),
    }


def projected_losses(fleet: Fleet) -> list[tuple[str, str]]:
    """Kubelet settings the manual process would wipe over the whole fleet: every pool it would update that has
    settings besides the port (it sends only the port field, and the pool's kubelet config is replaced)."""
    out = []
    for path, c in fleet.clusters.items():
        if c.autopilot or category(fleet, path) != "standard/disable":
            continue
        for pool in c.msg.node_pools:
            pool_path = f"{path}/nodePools/{pool.name}"
            has = "kubelet_config" in pool.config
            if has and port_of(pool.config.kubelet_config) == "disabled":
                continue
            if not supports_port_setting(pool.version):
                continue
            out += [(pool_path, key) for key in fleet.initial_kubelet.get(pool_path, {})]
    return out


def operation_seconds(fleet: Fleet) -> dict[str, float]:
    """Simulated seconds of operations per cluster (they run one after another on a cluster)."""
    out: dict[str, float] = defaultdict(float)
    for op in fleet.operations.values():
        if math.isfinite(op.end_at):
            started = dt.datetime.fromisoformat(op.msg.start_time.replace("Z", "+00:00")).timestamp()
            out[op.cluster] += op.end_at - (started - Fleet.EPOCH)
    return out


def real_time_projection(manual: dict[str, Any], ours: dict[str, Any], est: dict[str, Any]) -> dict[str, Any]:
    """Both processes at GKE's own pace (time scale 1), from the operations Portcullis actually ran. A model, not a
    measurement: operations take the simulator's GKE durations (cluster update 60 s, node pool 60 s + 30 s a node,
    Autopilot 60 s + 20 s a node); commands cost what they cost here.

    Manual: every operation waited for in turn, plus its commands, plus the DaemonSet's start and first print per
    Autopilot cluster checked. Portcullis with its production defaults: per wave a 60 s usage window, the wave's
    clusters spread over its concurrency (greedy, in plan order; the per-project and per-region operation limits
    are ignored), and the default 300 s soak after each wave but the last.
    """
    from config.schema import Rollout
    from tasks.change.waves import default_waves

    per_cluster = operation_seconds(ours["fleet"])
    timings = ours["fleet"].spec.timings
    commands = manual["commands"]
    op_free = [c.seconds for c in commands if c.operation_seconds is None]
    per_command = statistics.mean(op_free) if op_free else 0.0
    checked_autopilot = sum(
        1
        for p, c in manual["fleet"].clusters.items()
        if c.autopilot and category(manual["fleet"], p) != "autopilot/not_eligible"
    )
    manual_seconds = (
        sum(per_cluster.values())
        + est["commands"] * per_command
        + checked_autopilot * (timings.probe_pod_start + timings.probe_log_interval)
    )
    waves = default_waves(Rollout())
    wave_of = ours["wave_of"]
    ours_seconds = 0.0
    detail = []
    for i, wave in enumerate(waves):
        members = sorted(p for p, w in wave_of.items() if w == wave.name)
        if not members:
            continue
        workers = [0.0] * wave.concurrency
        for path in members:
            k = workers.index(min(workers))
            workers[k] += per_cluster.get(path, 0.0)
        soak = wave.soak_seconds if i < len(waves) - 1 else 0.0
        span = 60.0 + max(workers) + soak
        detail.append({"wave": wave.name, "clusters": len(members), "concurrency": wave.concurrency,
                       "seconds": span, "soak": soak})  # fmt: skip
        ours_seconds += span
    no_soak = ours_seconds - sum(d["soak"] for d in detail)
    return {"manual_seconds": manual_seconds, "portcullis_seconds": ours_seconds,
            "portcullis_seconds_no_soak": no_soak, "waves": detail, "per_command_seconds": per_command,
            "operation_seconds_total": sum(per_cluster.values())}  # fmt: skip


def compare(manual: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    sample = manual["sample"]
    m_state, p_state = manual["state"], ours["state"]
    both = [p for p in sample if m_state[p]["disabled"] and p_state[p]["disabled"]]
    only_manual = [p for p in sample if m_state[p]["disabled"] and not p_state[p]["disabled"]]
    only_ours = [p for p in sample if p_state[p]["disabled"] and not m_state[p]["disabled"]]
    sample_set = set(sample)

    def lost_in(report: dict[str, Any], paths: set[str] | None) -> list[dict[str, Any]]:
        return [
            e for e in report["lost_settings"] if paths is None or e["pool"].split("/nodePools/")[0] in paths
        ]

    def broken_in(report: dict[str, Any], paths: set[str] | None) -> list[dict[str, Any]]:
        return [e for e in report["breakage"] if paths is None or e["cluster"] in paths]

    return {
        "sample_disabled": {"manual": sum(m_state[p]["disabled"] for p in sample),
                            "portcullis": sum(p_state[p]["disabled"] for p in sample)},
        "both": len(both), "only_manual": only_manual, "only_portcullis": only_ours,
        "manual_lost": lost_in(manual["invariants"], sample_set),
        "portcullis_lost_sample": lost_in(ours["invariants"], sample_set),
        "portcullis_lost_fleet": lost_in(ours["invariants"], None),
        "manual_breakage": broken_in(manual["invariants"], sample_set),
        "portcullis_breakage_sample": broken_in(ours["invariants"], sample_set),
        "portcullis_breakage_fleet": broken_in(ours["invariants"], None),
        "open_nodes_sample": {"manual": sum(m_state[p]["open_nodes"] for p in sample),
                              "portcullis": sum(p_state[p]["open_nodes"] for p in sample)},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clusters", type=int, default=200)
    p.add_argument("--projects", type=int, default=40)
    p.add_argument("--seed", type=int, default=7, help="fleet generator and sample seed")
    p.add_argument(
        "--sample", type=int, default=20, help="clusters the manual process works through (0: all)"
    )
    p.add_argument("--time-scale", type=float, default=0.02, help="real seconds per simulated second")
    p.add_argument("--prefect-api-url", help="an existing Prefect API (default: the bench starts one)")
    p.add_argument(
        "--ephemeral-prefect",
        action="store_true",
        help="no Prefect server: each `portcullis rollout` starts a temporary one (timed with it)",
    )
    p.add_argument(
        "--kubectl",
        default="1.32",
        help="gcloud's kubectl build to use for every cluster, or 'dispatcher' (see pin_kubectl)",
    )
    p.add_argument(
        "--portcullis-runs", type=int, default=2, help="Portcullis runs on fresh copies (median used)"
    )
    p.add_argument("--json-out", help="write the figures here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    for tool in ("gcloud", "kubectl"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: the manual baseline needs the real {tool}", file=sys.stderr)
            return 2

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="manual-baseline-"))
    counter = CallCounter()
    spec = generate_fleet(args.clusters, args.projects, seed=args.seed)
    t_start = time.perf_counter()
    manual = run_manual(spec, args, counter, work)
    server = None
    if not args.prefect_api_url and not args.ephemeral_prefect:
        server = PrefectServer(work / "prefect-server")
        args.prefect_api_url = server.start()
        print(
            f"prefect server answering at {server.url} after {server.start_seconds:.0f} s (not timed)",
            flush=True,
        )
    runs = []
    try:
        for i in range(args.portcullis_runs):
            run_dir = work / f"portcullis-{i + 1}"
            run_dir.mkdir()
            fresh = generate_fleet(args.clusters, args.projects, seed=args.seed)
            runs.append(run_portcullis(fresh, args, counter, run_dir))
    finally:
        if server is not None:
            server.stop()
    walls = [r["wall_seconds"] for r in runs]
    ours = sorted(runs, key=lambda r: r["wall_seconds"])[len(runs) // 2]  # the median run (upper median)
    same_end = all(r["state"] == runs[0]["state"] for r in runs)
    est = extrapolate(manual, manual["fleet"])
    cmp_ = compare(manual, ours)

    n = len(manual["fleet"].clusters)
    sampled = len(manual["sample"]) < n
    manual_total = est["seconds"] if sampled else manual["wall_seconds"]
    manual_fair = (
        est["seconds_without_poll_slack"]
        if sampled
        else manual["wall_seconds"] - manual["poll_slack_seconds"]
    )
    manual_cmds = est["commands"] if sampled else len(manual["commands"])
    speedup = manual_total / ours["wall_seconds"]
    speedup_fair = manual_fair / ours["wall_seconds"]

    out = []
    say = out.append
    say(f"fleet: {n} clusters in {args.projects} projects (generate_fleet seed {args.seed}), time scale "
        f"{args.time_scale} (a 60 s cluster update takes {60 * args.time_scale:.1f} s)")  # fmt: skip
    load = os.getloadavg()
    say(
        f"machine: {os.cpu_count()} cores; load average (1/5/15 min) {load_before[0]:.1f}/{load_before[1]:.1f}/"
        f"{load_before[2]:.1f} at the start, {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end; kubectl: "
        f"{'gcloud dispatcher' if args.kubectl == 'dispatcher' else 'gcloud kubectl.' + args.kubectl}"
    )
    say("")
    say("MANUAL (the seed's commands, one at a time, real gcloud and kubectl)")
    if sampled:
        say(f"  MEASURED on a stratified random sample of {len(manual['sample'])} of {n} clusters (all "
            f"{manual['projects_listed']} projects listed); whole-fleet figures EXTRAPOLATED per category:")  # fmt: skip
        for row in est["rows"]:
            say(f"    {row['category']:34s} {row['clusters']:4d} clusters, {row['sampled']:2d} sampled, "
                f"{row['mean_seconds']:6.1f} s and {row['mean_commands']:4.1f} commands each")  # fmt: skip
    say(f"  measured wall time: {manual['wall_seconds']:.0f} s ({manual['list_seconds']:.0f} s listing projects), "
        f"{len(manual['commands'])} commands {manual['commands_by_tool']}")  # fmt: skip
    say(f"  Google API calls {manual['calls']['google_api_calls']}, Kubernetes requests "
        f"{manual['calls']['kubernetes_requests']}")  # fmt: skip
    say(f"  of which gcloud waiting past the end of operations (it polls every 5 s): "
        f"{manual['poll_slack_seconds']:.0f} s (median gcloud command without an operation: "
        f"{manual['gcloud_overhead_seconds']:.1f} s)")  # fmt: skip
    label = "extrapolated" if sampled else "measured"
    say(f"  whole fleet ({label}): {manual_total:.0f} s = {manual_total / 60:.1f} min, ~{manual_cmds:.0f} commands; "
        f"without gcloud's poll slack {manual_fair:.0f} s")  # fmt: skip
    if sampled:
        say(f"  (cross-check, plain mean per cluster x {n}: {est['simple_mean_seconds']:.0f} s)")
    say(f"  outcomes in the sample: {dict(Counter(cl.action for cl in manual['clusters']))}")
    say("")
    say("PORTCULLIS (portcullis rollout --yes, default waves, soak 0, on a fresh copy of the same fleet)")
    if server is not None:
        say(f"  against a running `prefect server start` (it took {server.start_seconds:.0f} s to answer; not timed, "
            f"like installing gcloud for the manual side)")  # fmt: skip
    elif args.ephemeral_prefect:
        say("  no Prefect server: each run starts a temporary one, included in its wall time")
    say(f"  wall time: {ours['wall_seconds']:.0f} s (whole fleet, from starting the CLI to its exit; median of "
        f"{len(runs)} runs on fresh copies: {', '.join(f'{w:.0f} s' for w in walls)}), exit {ours['returncode']}; "
        f"end state identical across runs: {same_end}")  # fmt: skip
    say(f"  of which: start-up until the first API call {ours['startup_seconds']:.0f} s, first to last API call "
        f"{ours['working_seconds']:.0f} s, report and exit {ours['finish_seconds']:.0f} s")  # fmt: skip
    say(f"  Google API calls {ours['calls']['google_api_calls']}, Kubernetes requests "
        f"{ours['calls']['kubernetes_requests']}; outcomes {ours['outcomes']}")  # fmt: skip
    say("")
    say("END STATE")
    say(f"  sample ({len(manual['sample'])} clusters) fully disabled: manual {cmp_['sample_disabled']['manual']}, "
        f"Portcullis {cmp_['sample_disabled']['portcullis']}; nodes with the port still open: "
        f"manual {cmp_['open_nodes_sample']['manual']}, Portcullis {cmp_['open_nodes_sample']['portcullis']}")  # fmt: skip
    for path in cmp_["only_manual"]:
        say(f"    only manual disabled {path} (Portcullis: {ours['per_cluster'].get(path)})")
    for path in cmp_["only_portcullis"]:
        action = next(cl.action for cl in manual["clusters"] if cl.path == path)
        say(f"    only Portcullis disabled {path} (manual: {action})")
    say(f"  kubelet settings lost: manual {len(cmp_['manual_lost'])} in the sample "
        f"{sorted({(e['pool'].rsplit('/', 1)[-1], e['setting']) for e in cmp_['manual_lost']})}; "
        f"Portcullis {len(cmp_['portcullis_lost_sample'])} in the sample, {len(cmp_['portcullis_lost_fleet'])} "
        f"in the whole fleet")  # fmt: skip
    if sampled:
        projected = projected_losses(Fleet(generate_fleet(args.clusters, args.projects, seed=args.seed)))
        say(
            f"  projected over the whole fleet, the manual process would lose {len(projected)} kubelet settings "
            f"on {len({p for p, _ in projected})} node pools (every pool it updates that has other settings)"
        )
    say(f"  port closed under a workload still using it: manual {len(cmp_['manual_breakage'])}, Portcullis "
        f"{len(cmp_['portcullis_breakage_fleet'])} (whole fleet)")  # fmt: skip
    say(
        f"  Portcullis whole fleet fully disabled: {sum(s['disabled'] for s in ours['state'].values())} of {n}"
    )
    say("")
    say(f"SPEED-UP: {speedup:.1f}x ({label} manual {manual_total:.0f} s vs Portcullis {ours['wall_seconds']:.0f} s); "
        f"{speedup_fair:.1f}x against the manual time without gcloud's poll slack. Goal: 20x.")  # fmt: skip
    proj = real_time_projection(manual, ours, est)
    say("")
    say(
        "PROJECTION at GKE's own pace (time scale 1; a model from the operations Portcullis ran, NOT measured)"
    )
    say(f"  operations: {proj['operation_seconds_total'] / 3600:.1f} h in total; manual waits for each in turn: "
        f"~{proj['manual_seconds'] / 3600:.1f} h with its commands ({proj['per_command_seconds']:.1f} s each)")  # fmt: skip
    say(f"  Portcullis, default waves, 60 s usage window: ~{proj['portcullis_seconds_no_soak'] / 3600:.2f} h without "
        f"soak ({proj['manual_seconds'] / proj['portcullis_seconds_no_soak']:.1f}x), "
        f"~{proj['portcullis_seconds'] / 3600:.2f} h with the default 300 s soaks "
        f"({proj['manual_seconds'] / proj['portcullis_seconds']:.1f}x)")  # fmt: skip
    say("    " + ", ".join(f"{w['wave']} {w['clusters']} clusters @{w['concurrency']}: {w['seconds'] / 60:.0f} min"
                          for w in proj["waves"]))  # fmt: skip
    text = "\n".join(out)
    print("\n" + text, flush=True)

    if args.json_out:
        data = {
            "args": vars(args), "sampled": sampled, "speedup": speedup, "speedup_without_poll_slack": speedup_fair,
            "manual": {k: v for k, v in manual.items() if k not in ("sim", "fleet", "commands", "clusters", "state")},
            "manual_clusters": [asdict(cl) for cl in manual["clusters"]],
            "manual_estimate": est,
            "portcullis": {k: v for k, v in ours.items() if k not in ("sim", "fleet", "state")},
            "portcullis_walls": walls, "portcullis_same_end_state": same_end,
            "comparison": cmp_, "projection": proj, "summary_text": text, "total_bench_seconds": time.perf_counter() - t_start,
        }  # fmt: skip
        Path(args.json_out).write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
