"""The monitoring agents a cluster can run, each configured to read the kubelet's read-only port 10255 the way
that agent really is configured (`ClusterSpec.agents`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gkesim.manifests import _NODE_READ_RULES, _cm, _container, _env, _rbac, _sa, _with_config, _workload

if TYPE_CHECKING:
    from gkesim.fleet import SimCluster

AGENT_NAMESPACES = {
    "datadog": "datadog",
    "telegraf": "monitoring",
    "metrics-server": "kube-system",
    "heapster": "kube-system",
    "fluent-bit": "logging",
    "prometheus": "monitoring",
    "signalfx": "signalfx",
    "curl": "default",
}


def agent_objects(agent: str, cluster: SimCluster, ns: str, run_deployments: bool) -> list[tuple[str, dict]]:
    """The objects one agent installs, configured to read the kubelet's read-only port 10255."""
    name = cluster.msg.name
    reps = 1 if run_deployments else 0
    objs: list[tuple[str, dict]] = []
    if agent == "datadog":
        labels = {"app": "datadog-agent", "app.kubernetes.io/name": "datadog-agent"}
        objs += [_sa("datadog-agent", ns), *_rbac("datadog-agent", _NODE_READ_RULES, "datadog-agent", ns)]
        objs.append(
            _workload(
                "DaemonSet",
                "datadog-agent",
                ns,
                labels,
                {
                    "serviceAccountName": "datadog-agent",
                    "containers": [
                        _container(
                            "agent",
                            "gcr.io/datadoghq/agent:7.54.0",
                            command=["agent", "run"],
                            env=[
                                {
                                    "name": "DD_API_KEY",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "datadog-secret", "key": "api-key"}
                                    },
                                },
                                _env("DD_SITE", "datadoghq.com"),
                                _env("DD_CLUSTER_NAME", name),
                                _env("DD_KUBERNETES_KUBELET_HOST", field_path="status.hostIP"),
                                _env("DD_KUBERNETES_HTTP_KUBELET_PORT", "10255"),
                                _env("DD_KUBELET_TLS_VERIFY", "false"),
                                _env("DD_LOGS_ENABLED", "true"),
                            ],
                            resources={"requests": {"cpu": "200m", "memory": "256Mi"}},
                        ),
                        _container(
                            "trace-agent",
                            "gcr.io/datadoghq/agent:7.54.0",
                            command=["trace-agent", "-config=/etc/datadog-agent/datadog.yaml"],
                            env=[
                                _env("DD_KUBERNETES_KUBELET_HOST", field_path="status.hostIP"),
                                _env("DD_KUBERNETES_HTTP_KUBELET_PORT", "10255"),
                            ],
                        ),
                    ],
                },
            )
        )
        objs.append(
            _workload(
                "Deployment",
                "datadog-cluster-agent",
                ns,
                {"app": "datadog-cluster-agent"},
                {
                    "serviceAccountName": "datadog-agent",
                    "containers": [
                        _container(
                            "cluster-agent",
                            "gcr.io/datadoghq/cluster-agent:7.54.0",
                            env=[_env("DD_CLUSTER_NAME", name), _env("DD_COLLECT_KUBERNETES_EVENTS", "true")],
                        )
                    ],
                },
                replicas=reps,
            )
        )
    elif agent == "telegraf":
        conf = (
            '[agent]\n  interval = "10s"\n  round_interval = true\n  flush_interval = "10s"\n'
            '  hostname = "$HOSTNAME"\n\n'
            '[[outputs.influxdb_v2]]\n  urls = ["http://influxdb.monitoring.svc:8086"]\n'
            '  token = "$INFLUX_TOKEN"\n  organization = "platform"\n  bucket = "k8s"\n\n'
            "[[inputs.cpu]]\n  percpu = false\n  totalcpu = true\n\n[[inputs.mem]]\n\n"
            '[[inputs.kubernetes]]\n  url = "http://$HOSTIP:10255"\n  insecure_skip_verify = true\n'
        )
        objs.append(_cm("telegraf", ns, {"telegraf.conf": conf}, {"app": "telegraf"}))
        objs.append(
            _workload(
                "DaemonSet",
                "telegraf",
                ns,
                {"app": "telegraf"},
                _with_config(
                    {
                        "containers": [
                            _container(
                                "telegraf",
                                "docker.io/library/telegraf:1.30",
                                env=[
                                    _env("HOSTIP", field_path="status.hostIP"),
                                    _env("HOSTNAME", field_path="spec.nodeName"),
                                    {
                                        "name": "INFLUX_TOKEN",
                                        "valueFrom": {"secretKeyRef": {"name": "telegraf", "key": "token"}},
                                    },
                                ],
                            )
                        ],
                    },
                    "telegraf",
                    "/etc/telegraf",
                ),
            )
        )
    elif agent == "metrics-server":
        labels = {"k8s-app": "metrics-server"}
        objs += [_sa("metrics-server", ns)]
        objs += _rbac(
            "system:metrics-server-insecure",
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes/metrics", "nodes/stats", "pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
            "metrics-server",
            ns,
        )
        objs.append(
            _workload(
                "Deployment",
                "metrics-server",
                ns,
                labels,
                {
                    "serviceAccountName": "metrics-server",
                    "priorityClassName": "system-cluster-critical",
                    "containers": [
                        _container(
                            "metrics-server",
                            "registry.k8s.io/metrics-server/metrics-server:v0.3.7",
                            args=[
                                "--cert-dir=/tmp",
                                "--secure-port=4443",
                                "--kubelet-port=10255",
                                "--deprecated-kubelet-completely-insecure=true",
                                "--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP",
                            ],
                            ports=[{"name": "main-port", "containerPort": 4443, "protocol": "TCP"}],
                        )
                    ],
                },
                replicas=reps,
            )
        )
    elif agent == "heapster":
        labels = {"k8s-app": "heapster", "task": "monitoring"}
        objs += [_sa("heapster", ns), *_rbac("heapster", _NODE_READ_RULES, "heapster", ns)]
        objs.append(
            _workload(
                "Deployment",
                "heapster",
                ns,
                labels,
                {
                    "serviceAccountName": "heapster",
                    "containers": [
                        _container(
                            "heapster",
                            "k8s.gcr.io/heapster-amd64:v1.5.4",
                            command=[
                                "/heapster",
                                "--source=kubernetes:https://kubernetes.default?kubeletPort=10255&kubeletHttps=false",
                                "--sink=influxdb:http://monitoring-influxdb.kube-system.svc:8086",
                            ],
                        )
                    ],
                },
                replicas=reps,
            )
        )
    elif agent == "fluent-bit":
        conf = (
            "[SERVICE]\n    Flush         1\n    Log_Level     info\n    Daemon        off\n"
            "    Parsers_File  parsers.conf\n    HTTP_Server   On\n    HTTP_Listen   0.0.0.0\n    HTTP_Port     2020\n\n"
            "[INPUT]\n    Name              tail\n    Tag               kube.*\n"
            "    Path              /var/log/containers/*.log\n    multiline.parser  docker, cri\n"
            "    Mem_Buf_Limit     5MB\n    Skip_Long_Lines   On\n\n"
            "[FILTER]\n    Name                kubernetes\n    Match               kube.*\n"
            "    Kube_URL            https://kubernetes.default.svc:443\n    Merge_Log           On\n"
            "    Keep_Log            Off\n    Use_Kubelet         On\n    Kubelet_Host        ${NODE_IP}\n"
            "    Kubelet_Port        10255\n    tls.verify          Off\n\n"
            "[OUTPUT]\n    Name            es\n    Match           *\n    Host            elasticsearch.logging.svc\n"
            "    Port            9200\n    Logstash_Format On\n"
        )
        objs += [_sa("fluent-bit", ns), *_rbac("fluent-bit-read", _NODE_READ_RULES, "fluent-bit", ns)]
        objs.append(
            _cm(
                "fluent-bit-config",
                ns,
                {"fluent-bit.conf": conf, "parsers.conf": "[PARSER]\n    Name   docker\n    Format json\n"},
                {"k8s-app": "fluent-bit"},
            )
        )
        objs.append(
            _workload(
                "DaemonSet",
                "fluent-bit",
                ns,
                {"k8s-app": "fluent-bit-logging"},
                _with_config(
                    {
                        "serviceAccountName": "fluent-bit",
                        "containers": [
                            _container(
                                "fluent-bit",
                                "cr.fluentbit.io/fluent/fluent-bit:2.2.2",
                                env=[_env("NODE_IP", field_path="status.hostIP")],
                                ports=[{"containerPort": 2020, "protocol": "TCP"}],
                            )
                        ],
                    },
                    "fluent-bit-config",
                    "/fluent-bit/etc/",
                ),
            )
        )
    elif agent == "prometheus":
        conf = (
            "global:\n  scrape_interval: 30s\n  evaluation_interval: 30s\n"
            "scrape_configs:\n"
            "- job_name: prometheus\n  static_configs:\n  - targets: ['localhost:9090']\n"
            "- job_name: kubernetes-nodes\n  scheme: http\n  kubernetes_sd_configs:\n  - role: node\n"
            "  relabel_configs:\n  - action: labelmap\n    regex: __meta_kubernetes_node_label_(.+)\n"
            "  - source_labels: [__address__]\n    regex: '(.*):10250'\n    replacement: '${1}:10255'\n"
            "    target_label: __address__\n"
            "- job_name: kubernetes-pods\n  kubernetes_sd_configs:\n  - role: pod\n  relabel_configs:\n"
            "  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]\n    action: keep\n"
            "    regex: true\n"
        )
        objs += [
            _sa("prometheus-server", ns),
            *_rbac("prometheus-server", _NODE_READ_RULES, "prometheus-server", ns),
        ]
        objs.append(
            _cm(
                "prometheus-server",
                ns,
                {"prometheus.yml": conf, "alerting_rules.yml": "{}\n"},
                {"app.kubernetes.io/name": "prometheus"},
            )
        )
        objs.append(
            _workload(
                "Deployment",
                "prometheus-server",
                ns,
                {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"},
                _with_config(
                    {
                        "serviceAccountName": "prometheus-server",
                        "containers": [
                            _container(
                                "prometheus-server",
                                "quay.io/prometheus/prometheus:v2.51.2",
                                args=[
                                    "--config.file=/etc/config/prometheus.yml",
                                    "--storage.tsdb.path=/data",
                                    "--storage.tsdb.retention.time=15d",
                                ],
                                ports=[{"containerPort": 9090, "protocol": "TCP"}],
                            )
                        ],
                    },
                    "prometheus-server",
                    "/etc/config",
                ),
                replicas=reps,
            )
        )
    elif agent == "signalfx":
        conf = (
            "signalFxAccessToken: ${SFX_ACCESS_TOKEN}\nsignalFxRealm: us1\n"
            "intervalSeconds: 10\nclusterName: " + name + "\n"
            "observers:\n- type: k8s-api\n"
            "monitors:\n- type: cpu\n- type: memory\n"
            "- type: kubelet-stats\n  kubeletAPI:\n    url: http://${MY_NODE_IP}:10255\n    authType: none\n"
            "- type: kubernetes-cluster\n  kubernetesAPI:\n    authType: serviceAccount\n"
        )
        objs += [_sa("signalfx-agent", ns), *_rbac("signalfx-agent", _NODE_READ_RULES, "signalfx-agent", ns)]
        objs.append(_cm("signalfx-agent", ns, {"agent.yaml": conf}, {"app": "signalfx-agent"}))
        objs.append(
            _workload(
                "DaemonSet",
                "signalfx-agent",
                ns,
                {"app": "signalfx-agent"},
                _with_config(
                    {
                        "serviceAccountName": "signalfx-agent",
                        "containers": [
                            _container(
                                "signalfx-agent",
                                "quay.io/signalfx/signalfx-agent:5.27.3",
                                env=[
                                    _env("MY_NODE_IP", field_path="status.hostIP"),
                                    _env("MY_NODE_NAME", field_path="spec.nodeName"),
                                    {
                                        "name": "SFX_ACCESS_TOKEN",
                                        "valueFrom": {
                                            "secretKeyRef": {"name": "signalfx-agent", "key": "access-token"}
                                        },
                                    },
                                ],
                            )
                        ],
                    },
                    "signalfx-agent",
                    "/etc/signalfx",
                ),
            )
        )
    elif agent == "curl" and run_deployments:
        objs.append(
            (
                "pods",
                {
                    "metadata": {"name": "kubelet-readonly-example", "namespace": ns},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            _container(
                                "kubelet-readonly-example",
                                "us-docker.pkg.dev/cloud-builders/ga/v1/curl:latest",
                                command=["curl", "http://$(NODE_ADDRESS):10255/metrics"],
                                env=[_env("NODE_ADDRESS", field_path="status.hostIP")],
                            )
                        ],
                    },
                },
            )
        )
    return objs
