"""Naming the workloads that use port 10255: every agent pattern, every field kind, and negatives.

Each case is data: an object as the Kubernetes API returns it (JSON, camelCase) and the exact set of
(field, agent, confidence) expected, so an extra finding fails a case as surely as a missing one.
"""

from __future__ import annotations

from typing import Any

import pytest

from tasks.usage.culprits import ADVICE, Agent, Confidence, Culprit, find_culprits, mentions_port

EXP, IMP, SUS = Confidence.EXPLICIT, Confidence.IMPLIED, Confidence.SUSPECTED


def container(name: str = "app", image: str = "example/app:1", **fields: Any) -> dict[str, Any]:
    env = fields.pop("env", None)
    out: dict[str, Any] = {"name": name, "image": image, **fields}
    if env is not None:
        out["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return out


def pod(
    *containers: dict[str, Any], annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p", "namespace": "ns"}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": list(containers), **spec},
    }


def workload(
    kind: str, *containers: dict[str, Any], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    template: dict[str, Any] = {
        "metadata": {"annotations": annotations or {}},
        "spec": {"containers": list(containers)},
    }
    spec = {"jobTemplate": {"spec": {"template": template}}} if kind == "CronJob" else {"template": template}
    return {"kind": kind, "metadata": {"name": "w", "namespace": "ns"}, "spec": spec}


def configmap(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "ns"},
        "data": data,
    }


DD_IMAGE = "gcr.io/datadoghq/agent:7.52.0"

TELEGRAF_CONF = """
[agent]
  interval = "10s"
[[inputs.kubernetes]]
  url = "http://$HOSTIP:10255"
  insecure_skip_verify = true
"""
FLUENT_BIT_CONF = """
[FILTER]
    Name                kubernetes
    Match               kube.*
    Use_Kubelet         On
    Kubelet_Port        10255
"""
PROM_RELABEL = """
scrape_configs:
  - job_name: kubernetes-nodes
    scheme: http
    kubernetes_sd_configs:
      - role: node
    relabel_configs:
      - source_labels: [__address__]
        regex: '(.*):10250'
        replacement: '${1}:10255'
        target_label: __address__
"""
PROM_HTTP_NODE_JOB = """
scrape_configs:
  - job_name: kubelet
    scheme: http
    kubernetes_sd_configs:
      - role: node
"""
PROM_SECURE = """
scrape_configs:
  - job_name: kubelet
    scheme: https
    tls_config:
      ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    authorization:
      credentials_file: /var/run/secrets/kubernetes.io/serviceaccount/token
    kubernetes_sd_configs:
      - role: node
  - job_name: pods
    scheme: http
    kubernetes_sd_configs:
      - role: pod
"""
SIGNALFX_DEFAULT = """
monitors:
  - type: kubelet-stats
    intervalSeconds: 10
"""
SIGNALFX_EXPLICIT = """
monitors:
  - type: kubelet-stats
    kubeletAPI:
      authType: none
      url: http://$(MY_NODE_NAME):10255
"""
SIGNALFX_SECURE = """
monitors:
  - type: kubelet-stats
    kubeletAPI:
      authType: serviceAccount
      url: https://$(MY_NODE_NAME):10250
"""
OTEL_NONE = """
receivers:
  kubeletstats/node:
    collection_interval: 10s
    auth_type: none
exporters:
  signalfx:
    realm: us0
"""
OTEL_SECURE = """
receivers:
  kubeletstats:
    auth_type: serviceAccount
    endpoint: ${env:K8S_NODE_NAME}:10250
"""

# The seed's own probe (reads 10250) and its migrated example: Portcullis must not flag itself.
SEED_PROBE = workload(
    "DaemonSet",
    container(
        "metrics-printer",
        "us-docker.pkg.dev/cloud-builders/ga/v1/curl:latest",
        command=["sh", "-c"],
        args=[
            'while true; do curl -s --cacert "${CA_CERT}" -H "Authorization: Bearer $(cat ${TOKEN_FILE})" '
            '"https://${NODE_ADDRESS}:10250/metrics"|grep kubelet_http_requests_total; sleep 20; done'
        ],
        env={"CA_CERT": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"},
    ),
)
SEED_MIGRATED = pod(
    container(
        "kubelet-readonly-example",
        command=[
            "sh",
            "-c",
            "curl -s --cacert /x/ca.crt -H 'Authorization: Bearer t' https://${NODE_ADDRESS}:10250/metrics",
        ],
    )
)

C = "spec.containers"
T = "spec.template.spec.containers"

CASES: list[tuple[str, dict[str, Any], set[tuple[str, Agent, Confidence]]]] = [
    # --- field kinds (generic) ---
    (
        "seed-example-command-url",
        pod(container("kubelet-readonly-example", command=["curl", "http://$(NODE_ADDRESS):10255/metrics"])),
        {(f"{C}[kubelet-readonly-example].command[1]", Agent.GENERIC, EXP)},
    ),
    (
        "shell-script-in-args",
        pod(container(args=["-c", "while true; do wget -qO- http://${HOST_IP}:10255/stats/summary; done"])),
        {(f"{C}[app].args[1]", Agent.GENERIC, EXP)},
    ),
    (
        "env-url",
        pod(container(env={"KUBELET_URL": "http://$(HOST_IP):10255"})),
        {(f"{C}[app].env[KUBELET_URL]", Agent.GENERIC, EXP)},
    ),
    (
        "env-bare-port-name",
        pod(container(env={"KUBELET_PORT": "10255"})),
        {(f"{C}[app].env[KUBELET_PORT]", Agent.GENERIC, EXP)},
    ),
    (
        "container-and-host-ports",
        pod(
            container(
                ports=[{"name": "ro", "containerPort": 10255}, {"containerPort": 8080, "hostPort": 10255}]
            )
        ),
        {
            (f"{C}[app].ports[ro].containerPort", Agent.GENERIC, EXP),
            (f"{C}[app].ports[1].hostPort", Agent.GENERIC, EXP),
        },
    ),
    (
        "probes",
        pod(
            container(
                livenessProbe={"httpGet": {"path": "/healthz", "port": 10255}},
                readinessProbe={"tcpSocket": {"port": "10255"}},
            )
        ),
        {
            (f"{C}[app].livenessProbe.httpGet.port", Agent.GENERIC, EXP),
            (f"{C}[app].readinessProbe.tcpSocket.port", Agent.GENERIC, EXP),
        },
    ),
    (
        "init-container",
        pod(
            container(),
            initContainers=[
                container(
                    "wait", command=["sh", "-c", "until curl -s localhost:10255/healthz; do sleep 1; done"]
                )
            ],
        ),
        {("spec.initContainers[wait].command[2]", Agent.GENERIC, EXP)},
    ),
    (
        "prometheus-port-annotation",
        pod(container(), annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "10255"}),
        {('metadata.annotations["prometheus.io/port"]', Agent.PROMETHEUS, EXP)},
    ),
    (
        "daemonset-template-and-annotations",
        workload(
            "DaemonSet",
            container(args=["--endpoint=http://localhost:10255"]),
            annotations={"scrape/port": "10255"},
        ),
        {
            (f"{T}[app].args[0]", Agent.GENERIC, EXP),
            ('spec.template.metadata.annotations["scrape/port"]', Agent.GENERIC, EXP),
        },
    ),
    (
        "cronjob-template",
        workload("CronJob", container(command=["curl", "http://node:10255/pods"])),
        {("spec.jobTemplate.spec.template.spec.containers[app].command[1]", Agent.GENERIC, EXP)},
    ),
    # --- agents ---
    (
        "datadog-explicit-env",
        workload(
            "DaemonSet",
            container(
                "agent",
                DD_IMAGE,
                env={"DD_KUBERNETES_HTTP_KUBELET_PORT": "10255", "DD_KUBELET_TLS_VERIFY": "false"},
            ),
        ),
        {(f"{T}[agent].env[DD_KUBERNETES_HTTP_KUBELET_PORT]", Agent.DATADOG, EXP)},
    ),
    (
        "datadog-suspected-tls-off",
        workload(
            "DaemonSet",
            container(
                "agent",
                DD_IMAGE,
                env={"DD_KUBELET_TLS_VERIFY": "false", "DD_KUBERNETES_HTTPS_KUBELET_PORT": "10250"},
            ),
        ),
        {(f"{T}[agent]", Agent.DATADOG, SUS)},
    ),
    (
        "datadog-suspected-no-https-port",
        pod(container("agent", "datadog/agent:7")),
        {(f"{C}[agent]", Agent.DATADOG, SUS)},
    ),
    (
        "datadog-configmap",
        configmap(
            **{
                "datadog.yaml": "kubernetes_kubelet_host: ${DD_KUBERNETES_KUBELET_HOST}\nkubernetes_http_kubelet_port: 10255\n"
            }
        ),
        {('data["datadog.yaml"]', Agent.DATADOG, EXP)},
    ),
    (
        "telegraf",
        configmap(**{"telegraf.conf": TELEGRAF_CONF}),
        {('data["telegraf.conf"]', Agent.TELEGRAF, EXP)},
    ),
    (
        "metrics-server-flag",
        workload(
            "Deployment",
            container(
                "metrics-server",
                "registry.k8s.io/metrics-server/metrics-server:v0.3.7",
                args=["--cert-dir=/tmp", "--kubelet-port=10255"],
            ),
        ),
        {(f"{T}[metrics-server].args[1]", Agent.METRICS_SERVER, EXP)},
    ),
    (
        "metrics-server-split-flag",
        pod(container("ms", command=["/metrics-server", "--kubelet-port", "10255"])),
        {(f"{C}[ms].command[2]", Agent.METRICS_SERVER, EXP)},
    ),
    (
        "heapster-explicit",
        pod(
            container(
                "heapster",
                "k8s.gcr.io/heapster-amd64:v1.5.4",
                command=[
                    "/heapster",
                    "--source=kubernetes:https://kubernetes.default?kubeletPort=10255&kubeletHttps=false",
                ],
            )
        ),
        {(f"{C}[heapster].command[1]", Agent.HEAPSTER, EXP)},
    ),
    (
        "heapster-implied-default",
        pod(
            container(
                "heapster",
                "k8s.gcr.io/heapster-amd64:v1.5.4",
                command=["/heapster", "--source=kubernetes.summary_api:''"],
            )
        ),
        {(f"{C}[heapster].command[1]", Agent.HEAPSTER, IMP)},
    ),
    (
        "fluent-bit",
        configmap(**{"fluent-bit.conf": FLUENT_BIT_CONF}),
        {('data["fluent-bit.conf"]', Agent.FLUENT_BIT, EXP)},
    ),
    (
        "fluent-bit-yaml-config",
        configmap(
            pipeline="pipeline:\n  filters:\n    - name: kubernetes\n      use_kubelet: on\n      kubelet_port: 10255\n"
        ),
        {('data["pipeline"]', Agent.FLUENT_BIT, EXP)},
    ),
    (
        "prometheus-relabel",
        configmap(**{"prometheus.yml": PROM_RELABEL}),
        {('data["prometheus.yml"]', Agent.PROMETHEUS, EXP)},
    ),
    (
        "prometheus-http-node-job",
        configmap(**{"prometheus.yml": PROM_HTTP_NODE_JOB}),
        {('data["prometheus.yml"]', Agent.PROMETHEUS, SUS)},
    ),
    (
        "signalfx-default-auth",
        configmap(**{"agent.yaml": SIGNALFX_DEFAULT}),
        {('data["agent.yaml"]', Agent.SPLUNK, IMP)},
    ),
    (
        "signalfx-explicit-url",
        configmap(**{"agent.yaml": SIGNALFX_EXPLICIT}),
        {('data["agent.yaml"]', Agent.SPLUNK, EXP)},
    ),
    ("otel-kubeletstats-none", configmap(**{"relay": OTEL_NONE}), {('data["relay"]', Agent.SPLUNK, IMP)}),
    ("configmap-env-style", configmap(KUBELET_PORT="10255"), {('data["KUBELET_PORT"]', Agent.GENERIC, EXP)}),
    # --- negatives ---
    ("seed-probe-daemonset", SEED_PROBE, set()),
    ("seed-migrated-pod", SEED_MIGRATED, set()),
    (
        "longer-number",
        pod(container(command=["app", "--port=102550", "http://h:102550/", "--id=110255"])),
        set(),
    ),
    (
        "number-in-words",
        pod(container(args=["--name=agent10255x", "10255x", "build-10255-foo", "v1.10255"])),
        set(),
    ),
    (
        "bare-number-not-a-port",
        pod(container(args=["--retries", "10255"], env={"BUILD_NUMBER": "10255"})),
        set(),
    ),
    ("decimal", pod(container(env={"RATIO": "port: 10255.5"})), set()),
    (
        "not-a-port-key",
        configmap(settings="timeout: 10255\nreport: 10255\nmax_items = 10255\nid 10255\n"),
        set(),
    ),
    (
        "revision-annotation",
        pod(container(), annotations={"deployment.kubernetes.io/revision": "10255"}),
        set(),
    ),
    ("image-tag", pod(container(image="registry.example:5000/tool:10255")), set()),
    (
        "container-port-other",
        pod(container(ports=[{"containerPort": 102550}, {"containerPort": 10250}])),
        set(),
    ),
    ("kubelet-config-closed", configmap(kubelet="readOnlyPort: 0\nport: 10250\n"), set()),
    (
        "heapster-https",
        pod(
            container(
                "heapster",
                command=[
                    "/heapster",
                    "--source=kubernetes:https://kubernetes.default?kubeletHttps=true&kubeletPort=10250",
                ],
            )
        ),
        set(),
    ),
    (
        "datadog-https-pinned",
        pod(
            container(
                "agent",
                DD_IMAGE,
                env={"DD_KUBERNETES_HTTPS_KUBELET_PORT": "10250", "DD_KUBELET_TLS_VERIFY": "true"},
            )
        ),
        set(),
    ),
    (
        "datadog-http-port-moved",
        pod(container("agent", DD_IMAGE, env={"DD_KUBERNETES_HTTP_KUBELET_PORT": "0"})),
        set(),
    ),
    (
        "datadog-cluster-agent",
        pod(container("cluster-agent", "gcr.io/datadoghq/cluster-agent:7.52.0")),
        set(),
    ),
    ("prometheus-secure", configmap(**{"prometheus.yml": PROM_SECURE}), set()),
    ("signalfx-secure", configmap(**{"agent.yaml": SIGNALFX_SECURE}), set()),
    ("otel-secure", configmap(**{"relay": OTEL_SECURE}), set()),
    (
        "binary-data-ignored",
        {"kind": "ConfigMap", "metadata": {"name": "b"}, "binaryData": {"x": "OjEwMjU1"}},
        set(),
    ),
]


@pytest.mark.parametrize(("obj", "expected"), [pytest.param(o, e, id=i) for i, o, e in CASES])
def test_cases(obj: dict[str, Any], expected: set[tuple[str, Agent, Confidence]]) -> None:
    found = find_culprits(obj)
    assert {(c.field, c.agent, c.confidence) for c in found} == expected
    for culprit in found:
        assert culprit.advice == ADVICE[culprit.agent]
        assert culprit.evidence and len(culprit.evidence) <= 200 and "\n" not in culprit.evidence


def test_every_agent_and_confidence_is_covered_by_a_case() -> None:
    covered = {(agent, conf) for _, _, expected in CASES for _, agent, conf in expected}
    assert {agent for agent, _ in covered} == set(Agent)
    assert {conf for _, conf in covered} == set(Confidence)


EVIDENCE = [
    ("telegraf", 'url = "http://$HOSTIP:10255"'),
    ("fluent-bit", "Kubelet_Port        10255"),
    ("prometheus-relabel", "replacement: '${1}:10255'"),
    ("metrics-server-split-flag", "--kubelet-port 10255"),
    ("env-bare-port-name", "KUBELET_PORT: 10255"),
    ("prometheus-http-node-job", "job_name: kubelet, role: node, scheme: http"),
]


@pytest.mark.parametrize(("case_id", "evidence"), EVIDENCE)
def test_evidence_is_the_matching_snippet(case_id: str, evidence: str) -> None:
    obj = next(o for i, o, _ in CASES if i == case_id)
    assert [c.evidence for c in find_culprits(obj)] == [evidence]


def test_long_line_evidence_is_shortened_around_the_match() -> None:
    script = "echo " + "x" * 500 + " && curl http://node:10255/metrics && echo " + "y" * 500
    (culprit,) = find_culprits(pod(container(args=[script])))
    assert ":10255/metrics" in culprit.evidence and len(culprit.evidence) <= 170


def test_identity_and_owner_for_grouping() -> None:
    def owned_pod(name: str, owner: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
        obj = pod(container(command=["curl", "http://n:10255/"]))
        obj["metadata"].update(name=name, ownerReferences=[owner], labels=labels or {})
        return obj

    ds_owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "scraper", "controller": True}
    a, b = (find_culprits(owned_pod(n, ds_owner))[0] for n in ("scraper-abcde", "scraper-fghij"))
    assert (a.namespace, a.kind, a.name, a.owner_kind, a.owner_name) == (
        "ns",
        "Pod",
        "scraper-abcde",
        "DaemonSet",
        "scraper",
    )
    assert a.workload == b.workload == ("ns", "DaemonSet", "scraper")

    rs_owner = {"kind": "ReplicaSet", "name": "web-5d8f7c9b4", "controller": True}
    (web,) = find_culprits(owned_pod("web-5d8f7c9b4-xyz12", rs_owner, {"pod-template-hash": "5d8f7c9b4"}))
    assert web.workload == ("ns", "Deployment", "web")

    (bare,) = find_culprits(pod(container(command=["curl", "http://n:10255/"])))
    assert (bare.owner_kind, bare.workload) == (None, ("ns", "Pod", "p"))


def test_list_items_without_kind_are_inferred() -> None:
    cm = configmap(**{"telegraf.conf": TELEGRAF_CONF})
    del cm["kind"]
    assert [c.kind for c in find_culprits(cm)] == ["ConfigMap"]
    p = pod(container(env={"KUBELET_PORT": "10255"}))
    del p["kind"]
    assert [c.kind for c in find_culprits(p)] == ["Pod"]
    assert [c.kind for c in find_culprits(p, kind="Pod")] == ["Pod"]


def test_snake_case_from_client_to_dict() -> None:
    obj = {
        "api_version": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "annotations": None,
            "owner_references": [{"kind": "DaemonSet", "name": "d", "controller": True}],
        },
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "x",
                    "command": None,
                    "args": None,
                    "env": None,
                    "ports": [{"container_port": 10255, "host_port": None, "name": None}],
                    "liveness_probe": None,
                }
            ],
            "init_containers": None,
        },
    }
    (culprit,) = find_culprits(obj)
    assert (culprit.field, culprit.workload) == (
        "spec.containers[c].ports[0].containerPort",
        ("ns", "DaemonSet", "d"),
    )


def test_not_a_dict_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="sanitize_for_serialization"):
        find_culprits(["not", "an", "object"])  # type: ignore[arg-type]


def test_advice_names_the_secure_path_and_vendor_settings() -> None:
    generic = ADVICE[Agent.GENERIC]
    for needle in ("10250", "ca.crt", "token", "nodes/metrics", "spec.nodeName", "never nodes/proxy"):
        assert needle in generic
    assert "DD_KUBERNETES_HTTPS_KUBELET_PORT=10250" in ADVICE[Agent.DATADOG]
    assert "DD_KUBELET_TLS_VERIFY" in ADVICE[Agent.DATADOG]
    assert "Kubelet_Port 10250" in ADVICE[Agent.FLUENT_BIT]
    assert "serviceAccount" in ADVICE[Agent.SPLUNK]
    assert (
        all("10250" in text for agent, text in ADVICE.items() if agent is not Agent.HEAPSTER)
        and "10250" in ADVICE[Agent.HEAPSTER]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":10255", True),
        ("=10255", True),
        ("port: 10255", True),
        ("Kubelet_Port 10255", True),
        ('"port": "10255"', True),
        ("readOnlyPort: 10255", True),
        ("ports: [10255]", True),
        ("connect to port 10255.", True),
        ("102550", False),
        ("10255x", False),
        ("report: 10255", False),
        ("port: 10255.5", False),
        (":10255-extra", False),
        ("10255", False),  # a bare number needs a port field or a port-like key
    ],
)
def test_mentions_port(text: str, expected: bool) -> None:
    assert mentions_port(text) is expected


def test_culprit_is_frozen() -> None:
    (culprit,) = find_culprits(pod(container(command=["curl", "http://n:10255/"])))
    assert isinstance(culprit, Culprit)
    with pytest.raises(AttributeError):
        culprit.name = "other"  # type: ignore[misc]
