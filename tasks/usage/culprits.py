"""Who still uses port 10255: name workloads from their Pod, workload and ConfigMap specs.

The usage counter says *that* a node's read-only port is used; these rules say *who*, so owners can
migrate before the port closes (FACTS.md, "Naming the culprits"). Objects are Kubernetes JSON as the API
returns it (camelCase; `ApiClient.sanitize_for_serialization` gives the same). The snake_case keys of the
client's `.to_dict()` are accepted too.

Three confidences: EXPLICIT (the number 10255 stands as a port in the object), IMPLIED (a known agent
setting whose default is the read-only port, e.g. SignalFx kubelet-stats without auth), SUSPECTED (an agent
that silently falls back to 10255 when HTTPS to 10250 fails, e.g. the Datadog agent). The number alone is
not enough: `102550`, `10255x`, a revision "10255" are not ports, so free text needs a port context
(`:10255`, `=10255`, `port: 10255`), and a bare value counts only where the field is a port.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

__all__ = ["Agent", "Confidence", "Culprit", "find_culprits", "mentions_port"]

PORT = "10255"


class Agent(StrEnum):
    DATADOG = "datadog"
    TELEGRAF = "telegraf"
    METRICS_SERVER = "metrics-server"
    HEAPSTER = "heapster"
    FLUENT_BIT = "fluent-bit"
    PROMETHEUS = "prometheus"
    SPLUNK = "splunk-signalfx"
    GENERIC = "generic"


class Confidence(StrEnum):
    EXPLICIT = "explicit"  # 10255 written as a port
    IMPLIED = "implied"  # an agent setting whose default is 10255
    SUSPECTED = "suspected"  # an agent that may fall back to 10255; confirm with the usage counter


_GENERIC_ADVICE = (
    "Read the kubelet on https://NODE:10250 instead, trusting the cluster CA "
    "(/var/run/secrets/kubernetes.io/serviceaccount/ca.crt) and sending the ServiceAccount token; grant "
    "RBAC get on nodes/metrics (or nodes/stats), never nodes/proxy. To list a node's pods, query the "
    "Kubernetes API with fieldSelector spec.nodeName=NODE instead of the kubelet's /pods."
)
ADVICE: dict[Agent, str] = {
    Agent.DATADOG: (
        "Datadog agent: remove DD_KUBERNETES_HTTP_KUBELET_PORT=10255, set DD_KUBERNETES_HTTPS_KUBELET_PORT="
        "10250 and make HTTPS work (DD_KUBELET_CLIENT_CA=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
        ", DD_KUBELET_TLS_VERIFY=true where the kubelet certificate verifies): when HTTPS fails the agent "
        "silently falls back to plain HTTP on DD_KUBERNETES_HTTP_KUBELET_PORT (default 10255). The agent's "
        "ClusterRole needs nodes/metrics and nodes/stats. Confirm with the readonly counter afterwards."
    ),
    Agent.TELEGRAF: (
        'Telegraf [[inputs.kubernetes]]: url = "https://$HOSTIP:10250", bearer_token = '
        '"/var/run/secrets/kubernetes.io/serviceaccount/token", tls_ca = '
        '"/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"; grant RBAC nodes/stats (get).'
    ),
    Agent.METRICS_SERVER: (
        "metrics-server: drop --kubelet-port=10255 (and any --deprecated-kubelet-completely-insecure); the "
        "default is HTTPS on 10250 with its ServiceAccount (RBAC nodes/metrics). On GKE prefer the managed "
        "metrics-server in kube-system over a self-installed one."
    ),
    Agent.HEAPSTER: (
        "Heapster is retired and defaults to kubeletPort=10255 over HTTP: replace it with metrics-server, or "
        "at least use ?kubeletHttps=true&kubeletPort=10250&useServiceAccount=true with RBAC nodes/stats."
    ),
    Agent.FLUENT_BIT: (
        "fluent-bit kubernetes filter: set Kubelet_Port 10250 with Kube_CA_File and Kube_Token_File (RBAC "
        "on the node endpoint it reads), or Use_Kubelet Off so pod metadata comes from the Kubernetes API."
    ),
    Agent.PROMETHEUS: (
        "Prometheus: scrape the kubelet with scheme: https on port 10250 (remove the relabel to :10255), "
        "tls_config.ca_file /var/run/secrets/kubernetes.io/serviceaccount/ca.crt and "
        "authorization.credentials_file .../token; RBAC nodes/metrics (get)."
    ),
    Agent.SPLUNK: (
        "Splunk/SignalFx kubelet stats: set authType: serviceAccount (SignalFx kubelet-stats) or "
        "auth_type: serviceAccount (OTel kubeletstats) with the endpoint on :10250; RBAC nodes/stats (get)."
    ),
    Agent.GENERIC: _GENERIC_ADVICE,
}


@dataclass(frozen=True)
class Culprit:
    """One place in one object that uses (or probably uses) the kubelet read-only port."""

    namespace: str
    kind: str
    name: str
    field: str
    """JSONPath-like location, e.g. spec.containers[agent].env[DD_KUBERNETES_HTTP_KUBELET_PORT]."""
    evidence: str
    agent: Agent
    advice: str
    confidence: Confidence = Confidence.EXPLICIT
    owner_kind: str | None = None
    """The controlling workload; a ReplicaSet `<deployment>-<pod-template-hash>` is given as its Deployment."""
    owner_name: str | None = None

    @property
    def workload(self) -> tuple[str, str, str]:
        """(namespace, kind, name) to group by, so a DaemonSet's pods report once per DaemonSet."""
        if self.owner_kind and self.owner_name:
            return (self.namespace, self.owner_kind, self.owner_name)
        return (self.namespace, self.kind, self.name)


# --- matching the number -------------------------------------------------------------------------

_END = r"(?![0-9A-Za-z_]|\.[0-9]|-\w)"  # not 102550, 10255x, 10255.5, 10255-foo; "10255." ends a sentence
_PORT_WORD = r"(?:(?<![A-Za-z])(?i:port)|(?<=[a-z0-9])Port|(?<=_)PORT)s?"  # port, kubeletPort, KUBELET_PORT
_PORT_TEXT_RE = re.compile(
    rf"(?::{PORT}"  # host:10255, ${{1}}:10255
    rf"|=[\"']?{PORT}"  # --kubelet-port=10255, ?kubeletPort=10255 (with spaces only after a port word)
    rf"|{_PORT_WORD}[\\\"']*(?:\s*[:=]\s*|\s+)[\\\"'\[]*{PORT}"  # port: 10255, Kubelet_Port 10255, ports: [10255
    rf"){_END}"
)
_PORTISH_KEY_RE = re.compile(r"port|kubelet", re.IGNORECASE)


def mentions_port(text: str) -> bool:
    """True when `text` uses 10255 as a port (`:10255`, `=10255`, `port: 10255`, ...)."""
    return _PORT_TEXT_RE.search(text) is not None


def _is_port_value(value: object) -> bool:
    """The whole value is the port: 10255 or "10255" (as in containerPort, or an env var NAME_PORT)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == int(PORT)
    return isinstance(value, str) and value.strip().strip("\"'") == PORT


def _snippet(text: str, pos: int, width: int = 160) -> str:
    """The line around `pos`, stripped and shortened: evidence a reviewer can read in a table."""
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start : end if end >= 0 else len(text)]
    offset = pos - start
    if len(line) > width:
        lo = max(0, min(offset - width // 2, len(line) - width))
        line = ("…" if lo else "") + line[lo : lo + width] + ("…" if lo + width < len(line) else "")
    return line.strip()


# --- which agent ---------------------------------------------------------------------------------

# (agent, pattern on the matching line) first, then (agent, pattern on the whole text or image).
_LINE_RULES: tuple[tuple[Agent, re.Pattern[str]], ...] = (
    (Agent.DATADOG, re.compile(r"kubernetes_http_kubelet_port|kubernetesHttpKubeletPort", re.I)),
    (Agent.METRICS_SERVER, re.compile(r"--kubelet-port\b")),
    (Agent.HEAPSTER, re.compile(r"kubeletPort=|kubeletHttps=", re.I)),
    (Agent.FLUENT_BIT, re.compile(r"\bKubelet_Port\b")),  # its documented spelling; KUBELET_PORT is generic
)
_CONTEXT_RULES: tuple[tuple[Agent, re.Pattern[str]], ...] = (
    (Agent.TELEGRAF, re.compile(r"\[\[\s*inputs\.kubernetes\s*\]\]|\btelegraf\b", re.I)),
    (Agent.SPLUNK, re.compile(r"kubelet-stats|kubeletstats|signalfx|splunk", re.I)),
    (
        Agent.PROMETHEUS,
        re.compile(r"scrape_configs|kubernetes_sd_configs|relabel_configs|\bprometheus\b", re.I),
    ),
    (Agent.DATADOG, re.compile(r"datadog", re.I)),
    (Agent.FLUENT_BIT, re.compile(r"fluent-?bit|\bUse_Kubelet\b", re.I)),
    (Agent.METRICS_SERVER, re.compile(r"metrics-server", re.I)),
    (Agent.HEAPSTER, re.compile(r"heapster", re.I)),
)


def _agent_for(line: str, context: str) -> Agent:
    for agent, pattern in _LINE_RULES:
        if pattern.search(line):
            return agent
    for agent, pattern in _CONTEXT_RULES:
        if pattern.search(context):
            return agent
    return Agent.GENERIC


# --- walking the object --------------------------------------------------------------------------


@functools.cache
def _snake(key: str) -> str:
    """`initContainers` -> `init_containers` (the keys are the few field names of this module: cached)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _get(obj: Any, key: str) -> Any:
    """obj[key] for camelCase JSON, or its snake_case twin from the client's `.to_dict()`."""
    if not isinstance(obj, Mapping):
        return None
    if key in obj:
        return obj[key]
    return obj.get(_snake(key))


@dataclass(frozen=True)
class _Hit:
    field: str
    evidence: str
    agent: Agent
    confidence: Confidence = Confidence.EXPLICIT


def _text_hits(field: str, text: str, context: str, key: str = "") -> Iterator[_Hit]:
    """Port uses in free text (a command, a URL, a config file); one hit per field and agent."""
    seen: set[Agent] = set()
    for match in _PORT_TEXT_RE.finditer(text):
        snippet = _snippet(text, match.start())
        agent = _agent_for(snippet, context)
        if agent not in seen:
            seen.add(agent)
            yield _Hit(field, snippet, agent)
    if not seen and _is_port_value(text) and _PORTISH_KEY_RE.search(key):
        yield _Hit(field, f"{key}: {text.strip()}" if key else text.strip(), _agent_for(key, context))


def _container_hits(prefix: str, container: Mapping[str, Any]) -> Iterator[_Hit]:
    name = _get(container, "name") or "?"
    base = f"{prefix}[{name}]"
    image = str(_get(container, "image") or "")
    for list_name in ("command", "args"):
        items = [str(item) for item in (_get(container, list_name) or [])]
        context = " ".join([image, *items])
        for i, item in enumerate(items):
            hits = list(_text_hits(f"{base}.{list_name}[{i}]", item, context))
            if not hits and i and _is_port_value(item) and mentions_port(f"{items[i - 1]} {item}"):
                hits = list(_text_hits(f"{base}.{list_name}[{i}]", f"{items[i - 1]} {item}", context))
            yield from hits
        yield from _heapster_implied(f"{base}.{list_name}", items)
    env = {str(_get(e, "name")): _get(e, "value") for e in _get(container, "env") or [] if _get(e, "name")}
    for var, value in env.items():
        if isinstance(value, str):
            yield from _text_hits(f"{base}.env[{var}]", value, f"{image} {var}", key=var)
    for i, port in enumerate(_get(container, "ports") or []):
        where = _get(port, "name") or i
        for key in ("containerPort", "hostPort"):
            if _is_port_value(_get(port, key)):
                yield _Hit(f"{base}.ports[{where}].{key}", f"{key}: {PORT}", _agent_for("", image))
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = _get(container, probe_name) or {}
        for handler in ("httpGet", "tcpSocket", "grpc"):
            port = _get(_get(probe, handler), "port")
            if _is_port_value(port):
                yield _Hit(f"{base}.{probe_name}.{handler}.port", f"port: {port}", _agent_for("", image))
    yield from _datadog_suspicion(base, image, env)


_DATADOG_AGENT_IMAGE_RE = re.compile(r"(?:^|/)datadog(?:hq)?/agent(?:[:@]|$)", re.I)


def _datadog_suspicion(base: str, image: str, env: Mapping[str, Any]) -> Iterator[_Hit]:
    """The node agent tries HTTPS on 10250 and silently falls back to HTTP on 10255 (its default)."""
    if not _DATADOG_AGENT_IMAGE_RE.search(image):
        return
    http_port = env.get("DD_KUBERNETES_HTTP_KUBELET_PORT")
    if http_port is not None:  # set to 10255: reported as explicit; set to anything else: no fallback
        return
    signs = []
    if str(env.get("DD_KUBELET_TLS_VERIFY", "")).strip().lower() == "false":
        signs.append("DD_KUBELET_TLS_VERIFY=false")
    if "DD_KUBERNETES_HTTPS_KUBELET_PORT" not in env:
        signs.append("no DD_KUBERNETES_HTTPS_KUBELET_PORT")
    if signs:
        evidence = f"image {image}; " + ", ".join(signs) + "; HTTP fallback port defaults to 10255"
        yield _Hit(base, evidence, Agent.DATADOG, Confidence.SUSPECTED)


_HEAPSTER_SOURCE_RE = re.compile(r"--source=kubernetes(?:\.summary_api)?:\S*")


def _heapster_implied(field: str, items: list[str]) -> Iterator[_Hit]:
    """Heapster's kubernetes source defaults to kubeletPort=10255 and kubeletHttps=false."""
    for i, item in enumerate(items):
        match = _HEAPSTER_SOURCE_RE.search(item)
        if match and not re.search(r"kubeletHttps=true|kubeletPort=", match.group(), re.I):
            yield _Hit(f"{field}[{i}]", match.group()[:160], Agent.HEAPSTER, Confidence.IMPLIED)


def _pod_spec_hits(prefix: str, spec: Mapping[str, Any]) -> Iterator[_Hit]:
    for list_name in ("initContainers", "containers", "ephemeralContainers"):
        for container in _get(spec, list_name) or []:
            yield from _container_hits(f"{prefix}{list_name}", container)


def _annotation_hits(prefix: str, metadata: Mapping[str, Any]) -> Iterator[_Hit]:
    for key, value in (_get(metadata, "annotations") or {}).items():
        if isinstance(value, str):
            yield from _text_hits(f'{prefix}annotations["{key}"]', value, f"{key} {value}", key=key)


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _config_implied(field: str, text: str) -> Iterator[_Hit]:
    """Settings whose default is the read-only port, found by reading YAML configs structurally."""
    if not re.search(r"kubelet-stats|kubelet-metrics|kubeletstats|kubernetes_sd_configs", text):
        return
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    for node in _walk(doc):
        if node.get("type") in ("kubelet-stats", "kubelet-metrics"):  # SignalFx Smart Agent monitor
            api = node.get("kubeletAPI") or {}
            auth = str(api.get("authType", "none")).lower()
            if auth == "none" and "url" not in api:
                evidence = f"type: {node['type']}, authType: {api.get('authType', '(default none)')}, no url"
                yield _Hit(field, evidence, Agent.SPLUNK, Confidence.IMPLIED)
        for key, value in node.items():  # OTel kubeletstats receiver
            if str(key).split("/")[0] == "kubeletstats" and isinstance(value, Mapping):
                endpoint = str(value.get("endpoint", ""))
                if str(value.get("auth_type", "")).lower() == "none" and not mentions_port(endpoint):
                    yield _Hit(field, f"{key}: auth_type: none", Agent.SPLUNK, Confidence.IMPLIED)
        roles = [
            str(sd.get("role")) for sd in node.get("kubernetes_sd_configs") or [] if isinstance(sd, Mapping)
        ]
        plain_http = str(node.get("scheme", "")).lower() == "http"
        if "node" in roles and plain_http and not mentions_port(str(node.get("relabel_configs"))):
            evidence = f"job_name: {node.get('job_name')}, role: node, scheme: http"
            yield _Hit(field, evidence, Agent.PROMETHEUS, Confidence.SUSPECTED)


def _configmap_hits(obj: Mapping[str, Any]) -> Iterator[_Hit]:
    for key, value in (_get(obj, "data") or {}).items():
        if not isinstance(value, str):
            continue
        field = f'data["{key}"]'
        yield from _text_hits(field, value, f"{key}\n{value}", key=key)
        yield from _config_implied(field, value)


_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_TEMPLATE_PATH = ("spec", "template", "spec")


def _infer_kind(obj: Mapping[str, Any]) -> str:
    """List items from the API carry no `kind`; tell the common shapes apart."""
    spec = _get(obj, "spec") or {}
    if "data" in obj or "binaryData" in obj or "binary_data" in obj:
        return "ConfigMap"
    if _get(spec, "containers") is not None:
        return "Pod"
    if _get(spec, "jobTemplate") is not None:
        return "CronJob"
    return "Workload"


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        obj = _get(obj, step) or {}
    return obj


def _owner(metadata: Mapping[str, Any]) -> tuple[str | None, str | None]:
    refs = [r for r in _get(metadata, "ownerReferences") or [] if isinstance(r, Mapping)]
    ref = next((r for r in refs if _get(r, "controller")), refs[0] if refs else None)
    if ref is None:
        return None, None
    kind, name = _get(ref, "kind"), _get(ref, "name")
    template_hash = (_get(metadata, "labels") or {}).get("pod-template-hash")
    if kind == "ReplicaSet" and template_hash and str(name).endswith(f"-{template_hash}"):
        return "Deployment", str(name)[: -len(template_hash) - 1]
    return kind, name


def find_culprits(obj: Mapping[str, Any], kind: str | None = None) -> list[Culprit]:
    """Every place in a Pod, workload (DaemonSet, Deployment, ...) or ConfigMap that uses port 10255.

    `kind` overrides `obj["kind"]` (list items from the API have none; it is inferred from the shape
    otherwise). For one field and agent the strongest confidence wins, so a Datadog container with an
    explicit DD_KUBERNETES_HTTP_KUBELET_PORT=10255 is reported once, as explicit.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(
            "pass Kubernetes JSON (a dict); for client objects use ApiClient.sanitize_for_serialization"
        )
    metadata = _get(obj, "metadata") or {}
    kind = kind or _get(obj, "kind") or _infer_kind(obj)
    hits: list[_Hit] = list(_annotation_hits("metadata.", metadata))
    if kind == "ConfigMap":
        hits += _configmap_hits(obj)
    else:
        path = _POD_SPEC_PATHS.get(kind, _TEMPLATE_PATH)
        hits += _pod_spec_hits(".".join(path) + ".", _dig(obj, path))
        if kind != "Pod":  # the pod template's own annotations
            template = path[:-1]
            hits += _annotation_hits(".".join(template) + ".metadata.", _dig(obj, (*template, "metadata")))
    rank = {Confidence.EXPLICIT: 0, Confidence.IMPLIED: 1, Confidence.SUSPECTED: 2}
    best: dict[tuple[str, Agent], _Hit] = {}
    for hit in hits:
        key = (hit.field, hit.agent)
        if key not in best or rank[hit.confidence] < rank[best[key].confidence]:
            best[key] = hit
    owner_kind, owner_name = _owner(metadata)
    return [
        Culprit(
            namespace=str(_get(metadata, "namespace") or ""),
            kind=kind,
            name=str(_get(metadata, "name") or ""),
            field=hit.field,
            evidence=hit.evidence,
            agent=hit.agent,
            advice=ADVICE[hit.agent],
            confidence=hit.confidence,
            owner_kind=owner_kind,
            owner_name=owner_name,
        )
        for hit in best.values()
    ]
