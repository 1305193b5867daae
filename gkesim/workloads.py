"""Seeding a cluster's objects: kube-system, each agent of `ClusterSpec.agents` configured to read the kubelet's
read-only port the way that agent really is configured, and clean workloads that never mention it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gkesim.agents import AGENT_NAMESPACES, agent_objects
from gkesim.kubesystem import system_objects
from gkesim.manifests import _cm, _container, _env, _rbac, _sa, _with_config, _workload

if TYPE_CHECKING:
    from gkesim.fleet import SimCluster
    from gkesim.kubestore import KubeStore


def clean_objects(cluster: SimCluster) -> list[tuple[str, dict]]:
    """Ordinary workloads; the only kubelet reader among them already uses the secure port 10250."""
    objs: list[tuple[str, dict]] = [
        _cm(
            "checkout-config",
            "shop",
            {
                "application.yaml": "server:\n  port: 8080\nmanagement:\n  port: 9090\n"
                "spring:\n  datasource:\n    url: jdbc:postgresql://10.20.0.5:5432/shop\n"
            },
        ),
        _workload(
            "Deployment",
            "frontend",
            "shop",
            {"app": "frontend"},
            {
                "containers": [
                    _container(
                        "frontend",
                        "us-docker.pkg.dev/google-samples/containers/gke/hello-app:2.0",
                        ports=[{"containerPort": 8080, "protocol": "TCP"}],
                        env=[_env("PORT", "8080")],
                        resources={"requests": {"cpu": "250m", "memory": "256Mi"}},
                    )
                ]
            },
            replicas=2,
        ),
        _workload(
            "Deployment",
            "checkout",
            "shop",
            {"app": "checkout"},
            _with_config(
                {
                    "containers": [
                        _container(
                            "checkout",
                            "us-docker.pkg.dev/google-samples/microservices-demo/checkoutservice:v0.10.0",
                            ports=[{"containerPort": 5050}],
                            resources={"requests": {"cpu": "100m", "memory": "128Mi"}},
                        )
                    ]
                },
                "checkout-config",
                "/config",
            ),
            replicas=1,
        ),
        _cm(
            "otel-collector-config",
            "observability",
            {
                "config.yaml": (
                    "receivers:\n  kubeletstats:\n    collection_interval: 20s\n    auth_type: serviceAccount\n"
                    "    endpoint: https://${env:K8S_NODE_NAME}:10250\n    insecure_skip_verify: true\n"
                    "exporters:\n  googlecloud: {}\nservice:\n  pipelines:\n    metrics:\n"
                    "      receivers: [kubeletstats]\n      exporters: [googlecloud]\n"
                )
            },
        ),
        _sa("otel-collector", "observability"),
        *_rbac(
            "otel-collector",
            [{"apiGroups": [""], "resources": ["nodes/stats", "nodes/metrics"], "verbs": ["get"]}],
            "otel-collector",
            "observability",
        ),
        _workload(
            "DaemonSet",
            "otel-collector",
            "observability",
            {"app": "otel-collector"},
            _with_config(
                {
                    "serviceAccountName": "otel-collector",
                    "containers": [
                        _container(
                            "otel-collector",
                            "otel/opentelemetry-collector-contrib:0.99.0",
                            env=[_env("K8S_NODE_NAME", field_path="spec.nodeName")],
                            resources={"requests": {"cpu": "50m", "memory": "64Mi"}},
                        )
                    ],
                },
                "otel-collector-config",
                "/conf",
            ),
        ),
    ]
    return objs


def seed_cluster(store: KubeStore) -> None:
    cluster = store.cluster
    # Autopilot: with workloads=False nothing but DaemonSets and GKE's own pods runs (an "empty" cluster).
    run_workloads = cluster.workloads or not cluster.autopilot
    namespaces = ["default", "kube-system", "kube-public", "kube-node-lease", "gmp-system", "gmp-public"]
    objs = system_objects(cluster)
    if run_workloads:
        namespaces += ["shop", "observability"]
        objs += clean_objects(cluster)
    for agent in cluster.agents:
        ns = AGENT_NAMESPACES.get(agent, "default")
        if cluster.autopilot and ns == "kube-system":
            ns = "monitoring"  # Autopilot does not let users write to kube-system
        if ns not in namespaces:
            namespaces.append(ns)
        objs += agent_objects(agent, cluster, ns, run_workloads)
    for ns in namespaces:
        store.add("namespaces", {"metadata": {"name": ns}})
    seen = set()
    for resource, body in objs:
        key = (resource, body["metadata"].get("namespace", ""), body["metadata"]["name"])
        if key in seen:
            continue
        seen.add(key)
        if resource == "pods":  # the curl example: on a node of a pool whose workloads read the port
            pools = [p for p, nodes in cluster.nodes.items() if nodes]
            busy = [p for p in pools if cluster.usage.get(p, (0, 0.0))[1] > 0] or pools
            store.add(resource, body, pin=(busy[0], 0) if busy else None)
        else:
            store.add(resource, body)
