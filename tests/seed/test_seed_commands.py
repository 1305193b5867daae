"""The seed's commands, as written there except for names, run with the real gcloud and kubectl against gkesim.

Each test checks the outcome the seed promises. The last one is the trap the seed does not mention: its node-pool
command sends only the port field, so under replace semantics a pool's other kubelet settings are lost, while
Portcullis sends the pool's whole kubelet config back with only the port changed.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.seed.conftest import SeedShell
from tests.seed.seed_commands import (
    AUTOPILOT_CREATE,
    AUTOPILOT_DELETE,
    AUTOPILOT_DISABLE,
    AUTOPILOT_LOGS,
    AUTOPILOT_VERIFY,
    CLUSTER_CA,
    CULPRIT_CONFIGMAPS,
    CULPRIT_PODS,
    FROM_SEED,
    MANIFEST,
    POOL_DISABLE,
    POOL_VERIFY,
    SEED_PROMISE,
    STANDARD_CHECK,
    STANDARD_DISABLE,
    STANDARD_VERIFY,
    normalise_value,
    seed_commands_joined,
    seed_text,
)

PROJECT = "seed-proj"
AGENTS = ["datadog", "telegraf", "metrics-server", "heapster", "fluent-bit", "prometheus", "signalfx", "curl"]
READONLY_LINE = re.compile(r'^kubelet_http_requests_total\{[^}]*server_type="readonly"[^}]*\} \d+$')
TUNED = {"cpu_manager_policy": "static", "pod_pids_limit": 4096}


def path(location: str, name: str) -> str:
    return f"projects/{PROJECT}/locations/{location}/clusters/{name}"


def fleet(*clusters: dict[str, Any]) -> dict[str, Any]:
    return {"projects": [{"id": PROJECT, "clusters": list(clusters)}]}


def test_the_commands_here_are_the_seeds() -> None:
    text = seed_text()
    if text is None:
        pytest.skip("the seed document is not on this machine")
    joined = seed_commands_joined(text)
    for name, command in FROM_SEED.items():
        assert command in joined, f"{name} is not in the seed as written: {command}"
    start = text.index("apiVersion: v1\n    kind: Namespace")
    manifest = textwrap.dedent(text[start - 4 : text.index("このマニフェストの内容は")]).strip() + "\n"
    assert MANIFEST.read_text(encoding="utf-8") == manifest


def test_standard_check_prints_readonly_lines_only_where_the_port_is_used(
    seed_shell: Any, kubectl: str
) -> None:
    shell: SeedShell = seed_shell(
        fleet(
            {
                "name": "std",
                "location": "us-central1",
                "pools": [
                    {"name": "busy", "nodes": 2, "usage": "in_use"},
                    {"name": "quiet", "nodes": 1},
                    {"name": "past", "nodes": 1, "usage": "used_before"},
                ],
            }
        )
    )
    ctx = path("us-central1", "std")
    seen: dict[str, list[str]] = {}
    for pool in ("busy", "quiet", "past"):
        # "at least one node of every node pool": the operator finds the nodes by the pool label
        names = shell.ok(
            f"kubectl get nodes -l cloud.google.com/gke-nodepool={pool} -o jsonpath='{{.items[*].metadata.name}}'",
            context=ctx,
        ).split()
        assert names, pool
        ran = shell.run(STANDARD_CHECK, context=ctx, NODE_NAME=names[0])
        seen[pool] = ran.stdout.splitlines()
        if pool == "quiet":  # "if the output is empty, the node's applications do not use the port"
            assert ran.stdout == "" and ran.returncode == 1, (
                ran
            )  # grep found nothing; kubectl itself succeeded
            assert "Error" not in ran.stderr
        else:
            assert ran.returncode == 0, ran
    assert seen["busy"] and all(READONLY_LINE.match(line) for line in seen["busy"])
    assert {re.search(r'path="([^"]+)"', line).group(1) for line in seen["busy"]} >= {"metrics", "stats"}
    # One reading shows past use too: the counter is not reset until the kubelet restarts.
    assert seen["past"] and all(READONLY_LINE.match(line) for line in seen["past"])


def autopilot_check(shell: SeedShell, ctx: str, nodes: int, in_use: bool) -> None:
    """The seed's Autopilot check on one cluster: create, read the printers' logs, delete; the promised outcome."""
    created = shell.ok(AUTOPILOT_CREATE, context=ctx)
    assert "daemonset.apps/node-metrics-printer created" in created
    deadline = time.monotonic() + 30
    while True:  # the pods start (until then kubectl logs fails: ContainerCreating), then print every 20 s
        ran = shell.run(AUTOPILOT_LOGS, context=ctx)
        logs = ran.stdout
        pods = {line.split("]")[0] for line in logs.splitlines() if "kubelet_http_requests_total" in line}
        if (ran.returncode == 0 and len(pods) == nodes) or time.monotonic() > deadline:
            break
        assert ran.returncode == 0 or "ContainerCreating" in ran.stderr, ran
        time.sleep(0.5)
    assert ran.returncode == 0, ran
    assert len(pods) == nodes, logs  # one printer per node, each line prefixed with its pod and container
    assert all(p.startswith("[pod/node-metrics-printer-") and p.endswith("/metrics-printer") for p in pods)
    readonly = [line for line in logs.splitlines() if 'server_type="readonly"' in line]
    assert bool(readonly) is in_use, logs
    deleted = shell.ok(AUTOPILOT_DELETE, context=ctx)
    assert deleted.count(" deleted") == 5, deleted  # the namespace's contents go while it is Terminating
    deadline = time.monotonic() + 30
    while True:  # the seed's objects are gone, the cluster-scoped ones too
        gone = shell.run(
            "kubectl get namespace node-metrics-printer-namespace; "
            "kubectl get clusterrole node-metrics-printer-role; "
            "kubectl get clusterrolebinding node-metrics-printer-binding",
            context=ctx,
        )
        if gone.stderr.count("NotFound") == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert gone.stderr.count("NotFound") == 3, gone


def test_autopilot_daemonset_check(seed_shell: Any, kubectl: str) -> None:
    shell: SeedShell = seed_shell(
        fleet(
            {
                "name": "busy",
                "location": "us-east1",
                "mode": "autopilot",
                "pools": [{"name": "default-pool", "nodes": 2, "usage": "in_use"}],
            },
            {
                "name": "quiet",
                "location": "europe-west1",
                "mode": "autopilot",
                "pools": [{"name": "default-pool", "nodes": 1}],
            },
        ),  # fmt: skip
        time_scale=0.05,  # a deleted namespace stays Terminating for a while (5 simulated s), as on GKE
    )
    for name, location, nodes, in_use in (("busy", "us-east1", 2, True), ("quiet", "europe-west1", 1, False)):
        autopilot_check(shell, path(location, name), nodes, in_use)
    # Autopilot never grants nodes/proxy: the Standard check does not work there, hence the DaemonSet.
    forbidden = shell.run(STANDARD_CHECK, context=path("us-east1", "busy"), NODE_NAME="any")
    assert forbidden.stdout == "" and "Forbidden" in forbidden.stderr


def test_culprit_search_finds_the_agents(seed_shell: Any, kubectl: str) -> None:
    shell: SeedShell = seed_shell(
        fleet(
            {
                "name": "agents",
                "location": "us-central1",
                "agents": AGENTS,
                "pools": [{"name": "default-pool", "nodes": 1, "usage": "in_use"}],
            },
            {"name": "clean", "location": "us-central1"},
        )  # fmt: skip
    )
    ctx = path("us-central1", "agents")
    pods = shell.ok(CULPRIT_PODS, context=ctx)
    configmaps = shell.ok(CULPRIT_CONFIGMAPS, context=ctx)
    in_pods = {
        "datadog": 'value: "10255"',  # DD_KUBERNETES_HTTP_KUBELET_PORT
        "metrics-server": "--kubelet-port=10255",
        "heapster": "kubeletPort=10255&kubeletHttps=false",
        "curl": ":10255/metrics",
    }
    in_configmaps = {
        "telegraf": 'url = "http://$HOSTIP:10255"',
        "fluent-bit": "Kubelet_Port",
        "prometheus": "replacement: '${1}:10255'",
        "signalfx": "url: http://${MY_NODE_IP}:10255",
    }
    for agent, needle in in_pods.items():
        assert needle in pods, (agent, pods)
    for agent, needle in in_configmaps.items():
        assert needle in configmaps, (agent, configmaps)
    for template in (CULPRIT_PODS, CULPRIT_CONFIGMAPS):
        clean = shell.run(template, context=path("us-central1", "clean"))
        assert clean.stdout == "" and clean.returncode == 1, clean


def test_disable_and_verify_all_three_levels(seed_shell: Any, gcloud: str) -> None:
    shell: SeedShell = seed_shell(
        fleet(
            {
                "name": "auto",
                "location": "us-east1",
                "mode": "autopilot",
                "pools": [{"name": "default-pool", "nodes": 1}],
            },
            {"name": "std", "location": "us-central1-a", "pools": [{"name": "default-pool", "nodes": 1}]},
        )  # fmt: skip
    )
    auto = {"CLUSTER_NAME": "auto", "LOCATION": "us-east1"}
    std = {"CLUSTER_NAME": "std", "LOCATION": "us-central1-a"}
    pool = {**std, "NODE_POOL_NAME": "default-pool"}
    levels = [(AUTOPILOT_DISABLE, AUTOPILOT_VERIFY, auto), (STANDARD_DISABLE, STANDARD_VERIFY, std),
              (POOL_DISABLE, POOL_VERIFY, pool)]  # fmt: skip

    # Unset everywhere: the verification commands print an empty line (unset is not "disabled").
    before = shell.ok_all(*[(verify, {"project": PROJECT, **names}) for _, verify, names in levels])
    assert before == ["\n", "\n", "\n"]
    # The two clusters at once; the pool after its cluster's default (one operation per cluster at a time).
    shell.ok_all(*[(disable, {"project": PROJECT, **names}) for disable, _, names in levels[:2]])
    shell.ok(POOL_DISABLE, project=PROJECT, **pool)
    *after, ca = shell.ok_all(
        *[(verify, {"project": PROJECT, **names}) for _, verify, names in levels],
        (CLUSTER_CA, {"project": PROJECT, **std}),  # the migration step's command, while we are here
    )
    for out in after:
        assert out == "insecureKubeletReadonlyPortEnabled=False\n"  # gcloud's value() rendering of the seed's
        assert normalise_value(out) == SEED_PROMISE

    # What gcloud sent, as the simulator journaled it: only the port field, at each level.
    sent = [(e.method, e.target.rsplit("/", 1)[-1], e.detail) for e in shell.sim.fleet.journal]
    off = {"insecure_kubelet_readonly_port_enabled": False}
    assert sorted(sent, key=str) == [
        ("UpdateCluster", "auto", {"desired_node_pool_auto_config_kubelet_config": off}),
        ("UpdateCluster", "std", {"desired_node_kubelet_config": off}),
        ("UpdateNodePool", "default-pool", {"kubelet_config": off}),
    ]
    # Autopilot rolled its nodes onto the new setting; the Standard pool's nodes were recreated.
    fleet_ = shell.sim.fleet
    assert not any(n.port_open for c in fleet_.clusters.values() for n in c.all_nodes())

    # The migration step's command: the cluster CA that clients of port 10250 must trust.
    assert base64.b64decode(ca.strip()) == shell.sim.kube.ca_pem


def test_trap_seed_pool_command_loses_kubelet_settings_portcullis_keeps_them(
    seed_shell: Any, gcloud: str, prefect_api: str, write_config: Any, tmp_path: Path
) -> None:
    shell: SeedShell = seed_shell(
        fleet(
            {
                "name": "seed-way",
                "location": "us-central1",
                "pools": [{"name": "tuned", "nodes": 1, "kubelet": TUNED}],
            },
            {
                "name": "portcullis-way",
                "location": "us-central1",
                "pools": [{"name": "tuned", "nodes": 1, "kubelet": TUNED}],
            },
        )  # fmt: skip
    )
    seed_pool = {"CLUSTER_NAME": "seed-way", "LOCATION": "us-central1", "NODE_POOL_NAME": "tuned"}
    ours_pool = {**seed_pool, "CLUSTER_NAME": "portcullis-way"}

    # Portcullis's way, on the twin cluster: `portcullis rollout --yes` as an operator runs it (started first,
    # it works on its own cluster while the seed's commands run on the other).
    config = write_config(shell.sim)
    report = tmp_path / "rollout.json"
    cli = Path(sys.executable).with_name("portcullis")
    argv = [str(cli)] if cli.exists() else [sys.executable, "-m", "flows.cli"]
    proc = subprocess.Popen(
        [*argv, "rollout", "--yes", "--config", str(config), "--report", str(report),
         "--cluster", path("us-central1", "portcullis-way")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        before = shell.ok(POOL_VERIFY, project=PROJECT, **seed_pool)
        assert before == "cpuManagerPolicy=static;podPidsLimit=4096\n"
        # The seed's way: the verification passes exactly as promised, and the pool's other settings are gone.
        shell.ok(POOL_DISABLE, project=PROJECT, **seed_pool)
        after = shell.ok(POOL_VERIFY, project=PROJECT, **seed_pool)
        assert normalise_value(after) == SEED_PROMISE
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    outcome = {c["name"]: c["outcome"] for c in json.loads(report.read_text())["clusters"]}
    assert outcome == {"portcullis-way": "verified"}
    ours = shell.ok(POOL_VERIFY, project=PROJECT, **ours_pool)
    assert ours == "cpuManagerPolicy=static;insecureKubeletReadonlyPortEnabled=False;podPidsLimit=4096\n"
    assert normalise_value(ours).splitlines() == [
        "cpuManagerPolicy: static", SEED_PROMISE, "podPidsLimit: 4096"
    ]  # fmt: skip

    lost = shell.sim.fleet.lost_settings()
    assert sorted((entry["pool"].split("/")[5], entry["setting"]) for entry in lost) == [
        ("seed-way", "cpu_manager_policy"),
        ("seed-way", "pod_pids_limit"),
    ]


def test_autopilot_check_on_1_27_and_1_28_clusters(seed_shell: Any, kubectl: str) -> None:
    """gcloud's `kubectl` is a dispatcher: on clusters of 1.27 and 1.28 it runs its kubectl 1.27/1.28 builds, which
    read /openapi/v2 as protobuf (gnostic's openapi.v2.Document) before `kubectl create` and for
    `kubectl explain --output=plaintext-openapiv2`."""
    shell: SeedShell = seed_shell(
        fleet(
            {
                "name": "older",
                "location": "us-east1",
                "mode": "autopilot",
                "version": "1.28.15-gke.1435000",
                "pools": [{"name": "default-pool", "nodes": 1, "usage": "in_use"}],
            },
            {
                "name": "oldest",
                "location": "europe-west1",
                "mode": "autopilot",
                "version": "1.27.16-gke.2703000",
                "pools": [{"name": "default-pool", "nodes": 1}],
            },
        ),  # fmt: skip
        time_scale=0.05,  # a deleted namespace stays Terminating for a while (5 simulated s), as on GKE
    )
    for name, location, minor, in_use in (
        ("older", "us-east1", "28", True),
        ("oldest", "europe-west1", "27", False),
    ):
        ctx = path(location, name)
        versions = json.loads(shell.ok("kubectl version -o json", context=ctx))
        assert versions["clientVersion"]["minor"] == minor, versions  # the dispatcher ran the matching build
        assert versions["serverVersion"]["minor"] == minor, versions
        autopilot_check(shell, ctx, nodes=1, in_use=in_use)
        explained = shell.ok(
            "kubectl explain daemonset.spec.template.spec.containers --output=plaintext-openapiv2",
            context=ctx,
        )
        assert re.search(r"^KIND:\s+DaemonSet\nVERSION:\s+apps/v1$", explained, re.M), explained
        # The fields the seed's manifest uses, and what is required, as the v2 document describes them.
        fields = set(re.findall(r"^   (\w+)\t", explained, re.M))
        assert {"name", "image", "command", "args", "env"} <= fields, explained
        assert re.search(r"^   name\t<string> -required-$", explained, re.M), explained
        for kind in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
            explained = shell.ok(f"kubectl explain {kind.lower()} --output=plaintext-openapiv2", context=ctx)
            assert re.search(rf"^KIND:\s+{kind}$", explained, re.M), explained
            assert re.search(r"^   metadata\t<Object>$", explained, re.M), explained
