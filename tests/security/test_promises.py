"""Issue 8 §4: the security promises, each a test.

- The bearer token never appears in logs, reports, artifacts or exception text: a real rollout runs as the
  operator would run it, with a recognisable token and every kind of failure, and every output is searched:
  stdout/stderr, the JSON report, every file under PREFECT_HOME and the run's directory, the Prefect API (flow
  runs, task runs, logs, artifacts, events) and the Prefect server's database file itself.
- TLS is always verified: a cluster whose CA does not match is `inconclusive` with the reason, never a result,
  and no request reaches it.
- The Autopilot probe asks for `get` on `nodes/metrics` only; its pod runs as non-root with a read-only root
  filesystem, no privilege escalation, all capabilities dropped, and resource requests and limits.
- Portcullis never creates RBAC with `nodes/proxy` and writes nothing to a cluster but the probe objects, each
  deleted again (from the simulator's journal and the bodies it received).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gkesim.kubestore import KubeStore
from tests.chaos.harness import MUTATIONS, REPO, portcullis_config, probe_objects

SECRET = f"PORTCULLIS-TOKEN-{secrets.token_hex(12)}"
P = "secure-proj-0001"
LOC = "us-central1"


def path(name: str) -> str:
    return f"projects/{P}/locations/{LOC}/clusters/{name}"


FLEET = {
    "organization": "555555555555",
    "timings": {"update_cluster": 20, "update_node_pool": 20, "per_node": 10},
    "projects": [
        {
            "id": P,
            "clusters": [
                {"name": "std-0", "pools": [{"name": "a", "kubelet": {"pod_pids_limit": 2048}}]},
                {"name": "std-1", "pools": [{"name": "a"}, {"name": "b"}]},
                {"name": "reader", "agents": ["datadog"], "pools": [{"name": "a", "usage": "in_use"}]},
                {"name": "ap-0", "mode": "autopilot"},
                {
                    "name": "ap-1",
                    "mode": "autopilot",
                    "pools": [{"name": "default-pool", "usage": "used_before"}],
                },
                {"name": "wrong-ca"},
                {"name": "ap-wrong-ca", "mode": "autopilot"},
                {"name": "forbidden"},
                {"name": "stuck"},
                {"name": "failing"},
            ],
        }
    ],
    "faults": {
        "wrong_ca": [path("wrong-ca"), path("ap-wrong-ca")],
        "forbidden_node_proxy": [path("forbidden")],
        "stuck_operations": [path("stuck")],
        "failing_operations": [path("failing")],
    },
}


class Recorder:
    """Every Kubernetes object body the simulated API servers received for creation."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, dict[str, Any]]] = []

    def install(self, mp: pytest.MonkeyPatch) -> None:
        real = KubeStore.create

        def create(store: KubeStore, resource: str, namespace: str | None, body: dict, dry_run: bool = False):
            self.bodies.append((store.path, resource, json.loads(json.dumps(body))))
            return real(store, resource, namespace, body, dry_run)

        mp.setattr(KubeStore, "create", create)


def _all(client: httpx.Client, url: str, body: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    while True:
        page = client.post(url, json={**body, "limit": 200, "offset": len(out)})
        page.raise_for_status()
        out += page.json()
        if len(page.json()) < 200:
            return out


def _prefect_api_dump(api: str, flow_run_ids: list[str]) -> str:
    """Everything the Prefect API holds about these runs, as text."""
    out: list[Any] = []
    with httpx.Client(base_url=api, timeout=30) as client:
        for fr in flow_run_ids:
            out.append(client.get(f"/flow_runs/{fr}").json())
            flt = {"flow_runs": {"id": {"any_": [fr]}}}
            out.append(_all(client, "/task_runs/filter", flt))
            out.append(_all(client, "/logs/filter", {"logs": {"flow_run_id": {"any_": [fr]}}}))
            out.append(_all(client, "/artifacts/filter", flt))
        out.append(client.post("/events/filter", json={"limit": 50}).json())
        out.append(client.post("/flows/filter", json={}).json())
    return json.dumps(out)


def _logs_settled(api: str, flow_run_id: str) -> int:
    """Wait until the server has stored the run's logs (the API records asynchronously)."""
    last, stable = -1, 0
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=api, timeout=30) as client:
        while time.monotonic() < deadline and stable < 3:
            n = len(_all(client, "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}}))
            stable = stable + 1 if n == last else 0
            last = n
            time.sleep(1.0)
    return last


@pytest.fixture(scope="module")
def secure_run(prefect_api, tmp_path_factory) -> Any:
    """One rollout as an operator runs it (the CLI, a subprocess), with the recognisable token."""
    from gkesim.server import Simulator
    from gkesim.spec import FleetSpec

    tmp = tmp_path_factory.mktemp("secure")
    sim = Simulator.from_spec(FleetSpec.model_validate(FLEET), time_scale=0.005)
    sim.kube.token = SECRET  # the simulated clusters accept only this token
    sim.start()
    mp = pytest.MonkeyPatch()
    recorder = Recorder()
    recorder.install(mp)
    try:
        config = portcullis_config(
            sim,
            tmp / "portcullis.yaml",
            api={"kubernetes_token": SECRET},
            rollout={"waves": [{"name": "all", "select": {"all": True}, "concurrency": 6, "failure_budget": 10}],
                     "operation_timeout_seconds": 3, "operation_retries": 0},
        )  # fmt: skip
        report = tmp / "report.json"
        env = {
            **os.environ,
            "PREFECT_LOGGING_LEVEL": "DEBUG",
            "PREFECT_LOGGING_EXTRA_LOGGERS": "kubernetes,urllib3,google,grpc,tasks,flows",
        }
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "rollout", "--yes", "--config", str(config), "--report", str(report)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        data = json.loads(report.read_text())
        yield {"sim": sim, "done": done, "report": data, "tmp": tmp, "recorder": recorder, "api": prefect_api}
    finally:
        mp.undo()
        sim.stop()


def test_the_run_exercised_failures(secure_run) -> None:
    """The token has every chance to leak: TLS failures, 403s, failed and stuck operations, probes."""
    rows = {c["cluster"]: c for c in secure_run["report"]["clusters"]}
    assert rows[path("std-0")]["outcome"] == "verified" and rows[path("ap-0")]["outcome"] == "verified"
    assert rows[path("forbidden")]["outcome"] == "blocked" and "403" in rows[path("forbidden")]["reason"]
    assert rows[path("stuck")]["outcome"] == "in_flight"
    assert rows[path("failing")]["outcome"] == "failed"
    assert any(r == "daemonsets" for _, r, _ in secure_run["recorder"].bodies), "a probe ran"


def test_token_never_appears_in_any_output(secure_run) -> None:
    from prefect.settings import PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL

    done = secure_run["done"]
    assert SECRET not in done.stdout and SECRET not in done.stderr
    assert SECRET not in json.dumps(secure_run["report"])
    # every file of the run and of Prefect's home (results, local storage, logs); the config is the one
    # place the operator put it
    config = secure_run["tmp"] / "portcullis.yaml"
    for root in (secure_run["tmp"], Path(PREFECT_HOME.value()), Path(os.environ["PREFECT_HOME"])):
        for f in root.rglob("*"):
            if f.is_file() and f != config:
                assert SECRET.encode() not in f.read_bytes(), f
    # the Prefect API: the run, its task runs, logs, artifacts, and events
    api = secure_run["api"]
    with httpx.Client(base_url=api, timeout=30) as client:
        runs = client.post("/flow_runs/filter", json={"sort": "START_TIME_DESC", "limit": 50}).json()
    ours = [r["id"] for r in runs if r["parameters"].get("config_path") == str(config)]
    assert ours, "the rollout's flow run is in the API"
    assert _logs_settled(api, ours[0]) > 0, "its logs reached the server"
    dump = _prefect_api_dump(api, ours)
    assert "portcullis-probe" in dump or "rollout" in dump  # the dump is real
    assert SECRET not in dump
    # the server's database itself (logs, states, events, artifacts, parameters)
    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or ""
    db = Path(url.split("///", 1)[1])
    stored = b"".join(f.read_bytes() for f in db.parent.glob(db.name + "*"))
    assert str(config).encode() in stored, "the search sees what the server stored (the run's parameters)"
    assert SECRET.encode() not in stored


def test_token_is_not_in_exception_text_or_reprs(make_sim, tmp_path, capsys) -> None:
    from config.schema import load_config
    from flows.cli import main
    from tasks.access.runtime import Runtime
    from tasks.usage import kube

    sim = make_sim({"organization": "1", "projects": [{"id": "secure-other", "clusters": [{"name": "c"}]}]})
    # a config error next to the token: the message names the problem, never the values around it
    bad = portcullis_config(
        sim, tmp_path / "bad.yaml", api={"kubernetes_token": SECRET, "container_endpoint": "8.8.8.8:443"}
    )
    assert main(["inventory", "--config", str(bad)]) == 2
    captured = capsys.readouterr()
    assert (
        "plaintext is allowed only for loopback" in captured.err and SECRET not in captured.err + captured.out
    )
    # a refused token (401) and a TLS failure, as exceptions and as the reasons Portcullis writes
    good = portcullis_config(sim, tmp_path / "good.yaml", api={"kubernetes_token": SECRET})
    rt = Runtime.build(load_config(good))
    try:
        assert SECRET not in repr(rt) and SECRET not in str(rt.config) and SECRET not in repr(rt.clients)
        cluster = sim.fleet.clusters["projects/secure-other/locations/us-central1/clusters/c"].msg
        api = rt.clients.kube(cluster.endpoint, cluster.master_auth.cluster_ca_certificate)
        with pytest.raises(Exception) as refused:  # the simulator accepts only its own token
            kube.list_nodes(api, 5)
        wrong_ca = base64.b64encode(sim.kube.wrong_ca_pem).decode()
        with pytest.raises(Exception) as tls:
            kube.list_nodes(rt.clients.kube(cluster.endpoint, wrong_ca), 5)
        for exc in (refused.value, tls.value):
            text = f"{exc!s} {exc!r} {kube.explain(exc, 'x')} {getattr(exc, 'headers', '')} {getattr(exc, 'body', '')}"
            assert SECRET not in text
        assert "401" in kube.explain(refused.value, "x") and "TLS verification failed" in kube.explain(
            tls.value, "x"
        )
    finally:
        rt.close()


def test_tls_is_always_verified(secure_run) -> None:
    from config.schema import Api, Scan

    sim = secure_run["sim"]
    rows = {c["cluster"]: c for c in secure_run["report"]["clusters"]}
    for name in ("wrong-ca", "ap-wrong-ca"):
        row = rows[path(name)]
        assert row["outcome"] == "blocked" and row["scan"]["verdict"] == "inconclusive", row
        assert "TLS verification failed" in " ".join(row["scan"]["reasons"]), row
        assert row["scan"]["evidence"] == [], "never a result from a server that could not be verified"
        assert not [b for b in secure_run["recorder"].bodies if b[0] == path(name)], "no request got through"
    nodes = list(sim.fleet.clusters[path("wrong-ca")].all_nodes())
    assert all(n.readwrite_reads == 0 for n in nodes), "no /metrics read reached a kubelet"
    # and there is no switch to turn verification off
    knobs = set(Api.model_fields) | set(Scan.model_fields)
    assert not {k for k in knobs if any(w in k for w in ("insecure", "verify", "skip_tls", "tls"))}


def test_probe_asks_for_nothing_more(secure_run) -> None:
    from tasks.usage.probe import probe_objects as manifest

    created = secure_run["recorder"].bodies
    static = manifest("portcullis-probe-test", "image", 20)
    received: dict[str, list[dict[str, Any]]] = {}
    for _, resource, body in created:
        received.setdefault(resource, []).append(body)
    assert len(received["daemonsets"]) >= 2, "both clear-looking Autopilot clusters were probed"
    for body in (static["cluster_role"], *received["clusterroles"]):
        assert body["rules"] == [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}]
    for ds in (static["daemonset"], *received["daemonsets"]):
        pod = ds["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC", "volumes"))
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False and sc.get("privileged") is False
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), c["resources"]
            assert c["resources"]["requests"] == c["resources"]["limits"]  # what Autopilot sets anyway
    for binding in received["clusterrolebindings"]:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": binding["metadata"]["name"]}  # fmt: skip
        assert [s["kind"] for s in binding["subjects"]] == ["ServiceAccount"]


def test_writes_nothing_but_probe_objects_and_never_nodes_proxy(secure_run) -> None:
    sim = secure_run["sim"]
    for cluster, resource, body in secure_run["recorder"].bodies:
        assert body["metadata"]["name"].startswith("portcullis-probe-"), (cluster, resource, body["metadata"])
        assert resource in (
            "namespaces",
            "clusterroles",
            "clusterrolebindings",
            "serviceaccounts",
            "daemonsets",
        )
        for rule in body.get("rules") or []:
            assert "nodes/proxy" not in rule.get("resources", []) and "*" not in rule.get("resources", [])
            assert "*" not in rule.get("verbs", [])
    k8s = [e for e in sim.fleet.journal if e.method.startswith("k8s.")]
    assert k8s and {e.method for e in k8s} <= {"k8s.create", "k8s.delete"}
    assert all("/portcullis-probe-" in e.target for e in k8s), [e.target for e in k8s][:5]
    created = {e.target for e in k8s if e.method == "k8s.create" and e.detail["kind"] in
               ("Namespace", "ClusterRole", "ClusterRoleBinding")}  # fmt: skip
    deleted = {e.target for e in k8s if e.method == "k8s.delete"}
    assert created <= deleted, created - deleted
    sim.fleet.clock._t0 -= 60 * sim.fleet.clock.time_scale
    assert probe_objects(sim.fleet) == []
    # and on GKE, only the kubelet setting, with every other kubelet field sent back unchanged
    fields = {tuple(sorted(e.detail)) for e in sim.fleet.journal if e.method in MUTATIONS}
    assert fields <= {("desired_node_kubelet_config",), ("desired_node_pool_auto_config_kubelet_config",),
                      ("kubelet_config",)}, fields  # fmt: skip
    assert sim.fleet.lost_settings() == []
