"""GKE's own workloads in kube-system and gmp-system, as every simulated cluster runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gkesim.manifests import _cm, _container, _env, _rbac, _sa, _workload

if TYPE_CHECKING:
    from gkesim.fleet import SimCluster


def system_objects(cluster: SimCluster) -> list[tuple[str, dict]]:
    """What GKE itself runs: kube-system and Managed Service for Prometheus. None of it reads port 10255."""
    version = cluster.msg.current_master_version
    minor = ".".join(version.split(".")[:2])
    ks = "kube-system"
    objs: list[tuple[str, dict]] = [
        *_rbac(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        *_rbac(
            "view",
            [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "configmaps", "services"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        ),
        *_rbac(
            "system:kube-dns",
            [{"apiGroups": [""], "resources": ["endpoints", "services"], "verbs": ["list", "watch"]}],
            "kube-dns",
            ks,
        ),
        *_rbac(
            "system:metrics-server",
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes/metrics", "pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
            "metrics-server",
            ks,
        ),
        *_rbac(
            "gmp-system:collector",
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes/metrics", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
            "collector",
            "gmp-system",
        ),
        _sa("kube-dns", ks),
        _sa("metrics-server", ks),
        _sa("fluentbit-gke", ks),
        _sa("gke-metrics-agent", ks),
        _sa("collector", "gmp-system"),
        _cm("kube-dns", ks, {}, {"addonmanager.kubernetes.io/mode": "EnsureExists"}),
        _cm(
            "fluentbit-gke-config-v1.4.0",
            ks,
            {
                "fluent-bit.conf": "[SERVICE]\n    Flush         5\n    Grace         120\n    Log_Level     info\n"
                "    HTTP_Server   On\n    HTTP_Listen   0.0.0.0\n    HTTP_PORT     2020\n"
                "@INCLUDE input-containers.conf\n@INCLUDE output.conf\n"
            },
        ),
        _cm(
            "gke-metrics-agent-conf",
            ks,
            {
                "gke-metrics-agent-config": "receivers:\n  kubeletstats:\n    collection_interval: 60s\n"
                "    auth_type: serviceAccount\n    endpoint: https://${NODE_NAME}:10250\n"
                "    insecure_skip_verify: true\n"
            },
        ),
        _workload(
            "DaemonSet",
            "fluentbit-gke",
            ks,
            {"k8s-app": "fluentbit-gke"},
            {
                "serviceAccountName": "fluentbit-gke",
                "priorityClassName": "system-node-critical",
                "containers": [
                    _container(
                        "fluentbit",
                        "gke.gcr.io/fluent-bit:v1.8.12-gke.40",
                        resources={"requests": {"cpu": "50m", "memory": "100Mi"}},
                    ),
                    _container(
                        "fluentbit-gke",
                        "gke.gcr.io/fluent-bit-gke-exporter:v0.26.1-gke.0",
                        resources={"requests": {"cpu": "5m", "memory": "30Mi"}},
                    ),
                ],
            },
        ),
        _workload(
            "DaemonSet",
            "gke-metrics-agent",
            ks,
            {"k8s-app": "gke-metrics-agent"},
            {
                "serviceAccountName": "gke-metrics-agent",
                "priorityClassName": "system-node-critical",
                "containers": [
                    _container(
                        "gke-metrics-agent",
                        "gke.gcr.io/gke-metrics-agent:1.10.2-gke.0",
                        env=[_env("NODE_NAME", field_path="spec.nodeName")],
                        resources={"requests": {"cpu": "8m", "memory": "60Mi"}},
                    ),
                    _container(
                        "core-metrics-exporter",
                        "gke.gcr.io/gke-metrics-collector:20240322_2300_RC0",
                        resources={"requests": {"cpu": "5m", "memory": "15Mi"}},
                    ),
                ],
            },
        ),
        _workload(
            "DaemonSet",
            "pdcsi-node",
            ks,
            {"k8s-app": "gcp-compute-persistent-disk-csi-driver"},
            {
                "priorityClassName": "system-node-critical",
                "containers": [
                    _container(
                        "csi-driver-registrar",
                        "gke.gcr.io/csi-node-driver-registrar:v2.9.3-gke.3",
                        resources={"requests": {"cpu": "5m", "memory": "10Mi"}},
                    ),
                    _container(
                        "gce-pd-driver",
                        "gke.gcr.io/gcp-compute-persistent-disk-csi-driver:v1.13.1-gke.0",
                        resources={"requests": {"cpu": "5m", "memory": "10Mi"}},
                    ),
                ],
            },
        ),
        _workload(
            "Deployment",
            "kube-dns",
            ks,
            {"k8s-app": "kube-dns"},
            {
                "serviceAccountName": "kube-dns",
                "priorityClassName": "system-cluster-critical",
                "containers": [
                    _container(
                        "kubedns",
                        "gke.gcr.io/k8s-dns-kube-dns:1.23.0-gke.9",
                        args=["--domain=cluster.local.", "--dns-port=10053", "--v=2"],
                        resources={"requests": {"cpu": "100m", "memory": "70Mi"}},
                    ),
                    _container(
                        "dnsmasq",
                        "gke.gcr.io/k8s-dns-dnsmasq-nanny:1.23.0-gke.9",
                        resources={"requests": {"cpu": "150m", "memory": "20Mi"}},
                    ),
                    _container(
                        "sidecar",
                        "gke.gcr.io/k8s-dns-sidecar:1.23.0-gke.9",
                        resources={"requests": {"cpu": "10m", "memory": "20Mi"}},
                    ),
                ],
            },
            replicas=2,
        ),
        _workload(
            "Deployment",
            "kube-dns-autoscaler",
            ks,
            {"k8s-app": "kube-dns-autoscaler"},
            {
                "containers": [
                    _container(
                        "autoscaler",
                        "gke.gcr.io/cluster-proportional-autoscaler:1.8.11-gke.6",
                        resources={"requests": {"cpu": "20m", "memory": "10Mi"}},
                    )
                ]
            },
            replicas=1,
        ),
        _workload(
            "Deployment",
            "konnectivity-agent",
            ks,
            {"k8s-app": "konnectivity-agent"},
            {
                "containers": [
                    _container(
                        "konnectivity-agent",
                        "gke.gcr.io/proxy-agent:v0.30.3-gke.0",
                        resources={"requests": {"cpu": "10m", "memory": "30Mi"}},
                    )
                ]
            },
            replicas=2,
        ),
        _workload(
            "Deployment",
            f"metrics-server-v{minor}.0",
            ks,
            {"k8s-app": "metrics-server"},
            {
                "serviceAccountName": "metrics-server",
                "priorityClassName": "system-cluster-critical",
                "containers": [
                    _container(
                        "metrics-server",
                        "gke.gcr.io/metrics-server:v0.7.1-gke.5",
                        command=[
                            "/metrics-server",
                            "--metric-resolution=30s",
                            "--kubelet-preferred-address-types=InternalIP",
                            "--cert-dir=/tmp",
                            "--secure-port=10250",
                        ],
                        resources={"requests": {"cpu": "43m", "memory": "55Mi"}},
                    ),
                    _container(
                        "metrics-server-nanny",
                        "gke.gcr.io/addon-resizer:1.8.20-gke.2",
                        resources={"requests": {"cpu": "5m", "memory": "50Mi"}},
                    ),
                ],
            },
            replicas=1,
        ),
        _workload(
            "Deployment",
            "event-exporter-gke",
            ks,
            {"k8s-app": "event-exporter"},
            {
                "containers": [
                    _container(
                        "event-exporter",
                        "gke.gcr.io/event-exporter:v0.4.0-gke.2",
                        resources={"requests": {"cpu": "5m", "memory": "20Mi"}},
                    )
                ]
            },
            replicas=1,
        ),
        _workload(
            "DaemonSet",
            "collector",
            "gmp-system",
            {"app.kubernetes.io/name": "collector"},
            {
                "serviceAccountName": "collector",
                "priorityClassName": "gmp-critical",
                "containers": [
                    _container(
                        "prometheus",
                        "gke.gcr.io/prometheus-engine/prometheus:v2.45.3-gmp.5-gke.0",
                        args=[
                            "--config.file=/prometheus/config_out/config.yaml",
                            "--web.listen-address=:19090",
                        ],
                        resources={"requests": {"cpu": "4m", "memory": "32M"}},
                    ),
                    _container(
                        "config-reloader",
                        "gke.gcr.io/prometheus-engine/config-reloader:v0.9.0-gke.1",
                        resources={"requests": {"cpu": "1m", "memory": "4M"}},
                    ),
                ],
            },
        ),
        _workload(
            "Deployment",
            "gmp-operator",
            "gmp-system",
            {"app.kubernetes.io/name": "gmp-operator"},
            {
                "containers": [
                    _container(
                        "operator",
                        "gke.gcr.io/prometheus-engine/operator:v0.9.0-gke.1",
                        resources={"requests": {"cpu": "1m", "memory": "16M"}},
                    )
                ]
            },
            replicas=1,
        ),
    ]
    if cluster.autopilot:
        objs.append(
            _workload(
                "DaemonSet",
                "anetd",
                ks,
                {"k8s-app": "cilium"},
                {
                    "hostNetwork": True,
                    "priorityClassName": "system-node-critical",
                    "containers": [
                        _container(
                            "cilium-agent",
                            "gke.gcr.io/cilium/cilium:v1.14.10-gke.100",
                            resources={"requests": {"cpu": "100m", "memory": "100Mi"}},
                        )
                    ],
                },
            )
        )
    else:
        objs.append(
            _workload(
                "Deployment",
                "l7-default-backend",
                ks,
                {"k8s-app": "glbc"},
                {
                    "containers": [
                        _container(
                            "default-http-backend",
                            "gke.gcr.io/ingress-gce-404-server-with-metrics:v1.23.2",
                            resources={"requests": {"cpu": "10m", "memory": "20Mi"}},
                        )
                    ]
                },
                replicas=1,
            )
        )
    return objs
