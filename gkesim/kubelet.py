"""What a simulated kubelet answers through the API server's node proxy: /metrics and /configz.

/metrics starts from a real kubelet payload (`data/kubelet_metrics_1_21.txt`, see `data/SOURCE.md`) and is padded to a
realistic size (a busy node's payload is several MB) with per-container series under real kubelet metric names.
Families are ordered by name, as the Go Prometheus client writes them, so `kubelet_http_requests_total` lands inside
the payload, neither at its start nor at its end. Everything except that family and `kubelet_node_name` is built
once; a request costs only the few dynamic lines.

Asked for gzip (`Accept-Encoding: gzip`, as Prometheus asks), the kubelet compresses /metrics. Here the body is then
a series of gzip members (RFC 1952 allows it; Go, urllib3 and zlib readers take it): the static parts compressed
once, the dynamic lines per request. A real kubelet sends one member; the bytes after decompression are the same.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

FAMILY = "kubelet_http_requests_total"
NODE_NAME_FAMILY = "kubelet_node_name"
DEFAULT_METRICS_BYTES = 2_000_000
_FIXTURE = "kubelet_metrics_1_21.txt"

# Who reads a GKE node's kubelet through the authenticated port, and how often (simulated seconds per request):
# the API server's health checks, gke-metrics-agent, the cAdvisor and probe scrapes, metrics-server's resource
# scrape, and the summary API. Each path gets a series only once it has been requested (the kubelet creates
# series lazily), so a freshly booted node shows few lines.
READWRITE_PERIODS: dict[str, float] = {
    "healthz": 10.0,
    "metrics": 60.0,
    "metrics/cadvisor": 30.0,
    "metrics/probes": 60.0,
    "metrics/resource": 15.0,
    "stats": 60.0,
}


def request_line(
    path: str, server_type: str, count: int, long_running: bool = False, method: str = "GET"
) -> str:
    """One `kubelet_http_requests_total` sample, exactly as the kubelet prints it (labels in name order)."""
    lr = "true" if long_running else "false"
    return (
        f'{FAMILY}{{long_running="{lr}",method="{method}",path="{path}",server_type="{server_type}"}} {count}'
    )


def readwrite_counts(uptime: float, own_reads: int = 0) -> dict[str, int]:
    """Authenticated-port request counts `uptime` simulated seconds after boot; `own_reads` are our proxy reads."""
    counts = {path: int(max(0.0, uptime) // period) for path, period in READWRITE_PERIODS.items()}
    counts["metrics"] += own_reads
    return {p: c for p, c in counts.items() if c > 0}


def family_lines(readwrite: dict[str, int], readonly: dict[str, int]) -> list[str]:
    """The family's samples, sorted the way the kubelet sorts them (by label values: path, then server_type)."""
    samples = [(p, "readwrite", c) for p, c in readwrite.items()] + [
        (p, "readonly", c) for p, c in readonly.items()
    ]
    samples.sort(key=lambda s: (s[0], s[1]))
    return [request_line(p, st, c) for p, st, c in samples]


# ----- the static payload ---------------------------------------------------------------------------------------

_HELP_RE = re.compile(r"^# HELP (\S+) ", re.M)


def _split_families(text: str) -> dict[str, str]:
    """Family name -> its block (HELP, TYPE and samples, newline-terminated)."""
    starts = [(m.start(), m.group(1)) for m in _HELP_RE.finditer(text)]
    out: dict[str, str] = {}
    for i, (pos, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        block = text[pos:end]
        out[name] = block if block.endswith("\n") else block + "\n"
    return out


@dataclass(frozen=True)
class _Container:
    namespace: str
    pod: str
    uid: str
    container: str


_NAMESPACES = ("default", "kube-system", "monitoring", "shop", "payments", "search", "batch", "ingress-nginx")
_APPS = (
    "frontend",
    "cart",
    "checkout",
    "catalog",
    "orders",
    "recommender",
    "ledger",
    "worker",
    "indexer",
    "gateway",
    "auth",
    "session",
    "notifier",
    "reporting",
    "scheduler",
    "inventory",
)
_SIDECARS = ("istio-proxy", "cloud-sql-proxy", "log-shipper", "config-reloader")


def _synthetic_containers(pods: int, rng: random.Random) -> list[_Container]:
    out = []
    for i in range(pods):
        app = _APPS[i % len(_APPS)]
        ns = _NAMESPACES[rng.randrange(len(_NAMESPACES))]
        rs = "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(10))
        suffix = "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        pod = f"{app}-{rs}-{suffix}"
        uid = str(_uuid(rng))
        out.append(_Container(ns, pod, uid, app))
        for sidecar in rng.sample(_SIDECARS, 2):
            out.append(_Container(ns, pod, uid, sidecar))
    return out


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


_PROBE_BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")
_CSI_DRIVERS = ("pd.csi.storage.gke.io", "filestore.csi.storage.gke.io", "gcsfuse.csi.storage.gke.io")
_CSI_METHODS = (
    "/csi.v1.Node/NodeExpandVolume",
    "/csi.v1.Node/NodeGetCapabilities",
    "/csi.v1.Node/NodeGetInfo",
    "/csi.v1.Node/NodeGetVolumeStats",
    "/csi.v1.Node/NodePublishVolume",
    "/csi.v1.Node/NodeStageVolume",
    "/csi.v1.Node/NodeUnpublishVolume",
    "/csi.v1.Node/NodeUnstageVolume",
)


def _histogram(name: str, labels: str, rng: random.Random, total: int, buckets=_PROBE_BUCKETS) -> list[str]:
    lines = []
    seen = 0
    for le in buckets:
        seen = total if le == "+Inf" else min(total, seen + int((total - seen) * rng.uniform(0.2, 0.9)))
        lines.append(f'{name}_bucket{{{labels},le="{le}"}} {seen}')
    lines.append(f"{name}_sum{{{labels}}} {total * rng.uniform(0.002, 0.05):.9g}")
    lines.append(f"{name}_count{{{labels}}} {total}")
    return lines


def _padding(containers: list[_Container], rng: random.Random) -> dict[str, list[str]]:
    """Extra samples per family name (new families get HELP/TYPE from `_PADDING_META`)."""
    out: dict[str, list[str]] = {}
    logs = out.setdefault("kubelet_container_log_filesystem_used_bytes", [])
    probes = out.setdefault("prober_probe_duration_seconds", [])
    probe_total = out.setdefault("prober_probe_total", [])
    vol = {
        k: out.setdefault(f"kubelet_volume_stats_{k}", [])
        for k in ("available_bytes", "capacity_bytes", "inodes", "inodes_free", "inodes_used", "used_bytes")
    }
    for c in containers:
        logs.append(
            f'kubelet_container_log_filesystem_used_bytes{{container="{c.container}",namespace="{c.namespace}",'
            f'pod="{c.pod}",uid="{c.uid}"}} {rng.randrange(4096, 60_000_000)}'
        )
        for probe_type in ("Liveness", "Readiness"):
            runs = rng.randrange(2_000, 90_000)
            labels = (
                f'container="{c.container}",namespace="{c.namespace}",pod="{c.pod}",probe_type="{probe_type}"'
            )
            probes.extend(_histogram("prober_probe_duration_seconds", labels, rng, runs))
            probe_total.append(
                f'prober_probe_total{{container="{c.container}",namespace="{c.namespace}",pod="{c.pod}",'
                f'pod_uid="{c.uid}",probe_type="{probe_type}",result="successful"}} {runs}'
            )
    for c in containers[::9]:
        capacity = rng.choice((10, 20, 50, 100, 200)) << 30
        used = int(capacity * rng.uniform(0.05, 0.9))
        inodes = capacity // 16384
        iused = rng.randrange(100, 200_000)
        pvc = f'namespace="{c.namespace}",persistentvolumeclaim="data-{c.pod.rsplit("-", 1)[0]}"'
        for key, value in (
            ("available_bytes", capacity - used),
            ("capacity_bytes", capacity),
            ("inodes", inodes),
            ("inodes_free", inodes - iused),
            ("inodes_used", iused),
            ("used_bytes", used),
        ):
            vol[key].append(f"kubelet_volume_stats_{key}{{{pvc}}} {value}")
    csi = out.setdefault("csi_operations_seconds", [])
    for driver in _CSI_DRIVERS:
        for method in _CSI_METHODS:
            labels = f'driver_name="{driver}",grpc_status_code="OK",method_name="{method}",migrated="false"'
            csi.extend(_histogram("csi_operations_seconds", labels, rng, rng.randrange(10, 50_000)))
    return out


_PADDING_META = {
    "csi_operations_seconds": (
        "[ALPHA] Container Storage Interface operation duration with gRPC error code status total",
        "histogram",
    ),
    "prober_probe_duration_seconds": ("[ALPHA] Duration in seconds for a probe response.", "histogram"),
    "prober_probe_total": (
        "[BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.",
        "counter",
    ),
    "kubelet_volume_stats_available_bytes": ("[ALPHA] Number of available bytes in the volume", "gauge"),
    "kubelet_volume_stats_capacity_bytes": ("[ALPHA] Capacity in bytes of the volume", "gauge"),
    "kubelet_volume_stats_inodes": ("[ALPHA] Maximum number of inodes in the volume", "gauge"),
    "kubelet_volume_stats_inodes_free": ("[ALPHA] Number of free inodes in the volume", "gauge"),
    "kubelet_volume_stats_inodes_used": ("[ALPHA] Number of used inodes in the volume", "gauge"),
    "kubelet_volume_stats_used_bytes": ("[ALPHA] Number of used bytes in the volume", "gauge"),
}


def _load_fixture() -> str:
    return resources.files("gkesim").joinpath("data", _FIXTURE).read_text(encoding="utf-8")


def _build_blocks(pods: int, seed: int) -> dict[str, str]:
    families = _split_families(_load_fixture())
    rng = random.Random(seed)
    for name, lines in _padding(_synthetic_containers(pods, rng), rng).items():
        if not lines:
            continue
        extra = "\n".join(lines) + "\n"
        if name in families:
            families[name] += extra
        else:
            help_text, kind = _PADDING_META[name]
            families[name] = f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n" + extra
    return families


def gzip_member(data: bytes, level: int) -> bytes:
    """One gzip member holding `data` (nothing for no data)."""
    return zlib.compress(data, level, wbits=zlib.MAX_WBITS | 16) if data else b""


class MetricsPayload:
    """A kubelet /metrics body of about `target_bytes`: static bytes computed once, dynamic lines per request.

    `parts(...)` returns the pieces to send in order; their lengths add up to the Content-Length.
    """

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, target_bytes: int = DEFAULT_METRICS_BYTES, seed: int = 1021) -> None:
        self.target_bytes = target_bytes
        base = sum(len(b) for b in _build_blocks(0, seed).values())
        per_pod = max(1, sum(len(b) for b in _build_blocks(8, seed).values()) - base) / 8
        pods = max(0, math.ceil((target_bytes - base) / per_pod)) if target_bytes > base else 0
        blocks = _build_blocks(pods, seed)
        while pods and sum(len(b) for b in blocks.values()) < target_bytes:
            pods += 1 + int((target_bytes - sum(len(b) for b in blocks.values())) / per_pod)
            blocks = _build_blocks(pods, seed)
        self.synthetic_pods = pods
        family = blocks.pop(FAMILY)
        node_block = blocks.pop(NODE_NAME_FAMILY)
        self._family_head = "".join(family.splitlines(keepends=True)[:2]).encode()
        self._node_head = "".join(node_block.splitlines(keepends=True)[:2]).encode()
        names = sorted([*blocks, FAMILY, NODE_NAME_FAMILY])
        chunks: list[list[str]] = [[], [], []]
        slot = 0
        for name in names:
            if name == FAMILY:
                slot = 1
            elif name == NODE_NAME_FAMILY:
                slot = 2
            else:
                chunks[slot].append(blocks[name])
        self._static = tuple("".join(c).encode() for c in chunks)
        self._static_gzip = tuple(gzip_member(s, 6) for s in self._static)
        self.static_bytes = sum(len(s) for s in self._static)

    def dynamic_family(self, readwrite: dict[str, int], readonly: dict[str, int]) -> bytes:
        lines = family_lines(readwrite, readonly)
        return self._family_head + ("\n".join(lines) + "\n").encode() if lines else b""

    def parts(self, node_name: str, readwrite: dict[str, int], readonly: dict[str, int]) -> list[bytes]:
        node = self._node_head + f'{NODE_NAME_FAMILY}{{node="{node_name}"}} 1\n'.encode()
        return [
            self._static[0],
            self.dynamic_family(readwrite, readonly),
            self._static[1],
            node,
            self._static[2],
        ]

    def gzip_parts(self, node_name: str, readwrite: dict[str, int], readonly: dict[str, int]) -> list[bytes]:
        """`parts` as gzip members (Content-Encoding: gzip), only the two dynamic ones compressed per request."""
        _, family, _, node, _ = self.parts(node_name, readwrite, readonly)
        first, middle, last = self._static_gzip
        return [first, gzip_member(family, 1), middle, gzip_member(node, 1), last]

    def render(self, node_name: str, readwrite: dict[str, int], readonly: dict[str, int]) -> bytes:
        return b"".join(self.parts(node_name, readwrite, readonly))


# ----- /configz --------------------------------------------------------------------------------------------------

KUBELET_FIELDS = {  # NodeKubeletConfig (GKE API, snake_case) -> KubeletConfiguration (camelCase)
    "cpu_manager_policy": "cpuManagerPolicy",
    "cpu_cfs_quota": "cpuCFSQuota",
    "cpu_cfs_quota_period": "cpuCFSQuotaPeriod",
    "pod_pids_limit": "podPidsLimit",
    "image_gc_low_threshold_percent": "imageGCLowThresholdPercent",
    "image_gc_high_threshold_percent": "imageGCHighThresholdPercent",
    "image_minimum_gc_age": "imageMinimumGCAge",
    "image_maximum_gc_age": "imageMaximumGCAge",
    "container_log_max_size": "containerLogMaxSize",
    "container_log_max_files": "containerLogMaxFiles",
    "allowed_unsafe_sysctls": "allowedUnsafeSysctls",
}


def configz(
    node_name: str,
    provider_id: str,
    port_open: bool,
    overrides: dict[str, Any] | None = None,
    cluster_dns: str = "10.0.0.10",
) -> dict[str, Any]:
    """The kubelet's running configuration as /configz shows it (`readOnlyPort` 0 when the port is closed)."""
    cfg: dict[str, Any] = {
        "enableServer": True,
        "staticPodPath": "/etc/kubernetes/manifests",
        "syncFrequency": "1m0s",
        "fileCheckFrequency": "20s",
        "httpCheckFrequency": "20s",
        "address": "0.0.0.0",
        "port": 10250,
        "readOnlyPort": 10255 if port_open else 0,
        "rotateCertificates": True,
        "serverTLSBootstrap": True,
        "authentication": {
            "x509": {"clientCAFile": "/etc/srv/kubernetes/pki/ca-certificates.crt"},
            "webhook": {"enabled": True, "cacheTTL": "2m0s"},
            "anonymous": {"enabled": False},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"},
        },
        "registryPullQPS": 5,
        "registryBurst": 10,
        "eventRecordQPS": 50,
        "eventBurst": 100,
        "enableDebuggingHandlers": True,
        "healthzPort": 10248,
        "healthzBindAddress": "127.0.0.1",
        "oomScoreAdj": -999,
        "clusterDomain": "cluster.local",
        "clusterDNS": [cluster_dns],
        "streamingConnectionIdleTimeout": "4h0m0s",
        "nodeStatusUpdateFrequency": "10s",
        "nodeStatusReportFrequency": "5m0s",
        "nodeLeaseDurationSeconds": 40,
        "imageMinimumGCAge": "2m0s",
        "imageGCHighThresholdPercent": 85,
        "imageGCLowThresholdPercent": 80,
        "volumeStatsAggPeriod": "1m0s",
        "cgroupRoot": "/",
        "cgroupsPerQOS": True,
        "cgroupDriver": "systemd",
        "cpuManagerPolicy": "none",
        "cpuManagerReconcilePeriod": "10s",
        "memoryManagerPolicy": "None",
        "topologyManagerPolicy": "none",
        "topologyManagerScope": "container",
        "runtimeRequestTimeout": "2m0s",
        "hairpinMode": "promiscuous-bridge",
        "maxPods": 110,
        "podPidsLimit": -1,
        "resolvConf": "/etc/resolv.conf",
        "cpuCFSQuota": True,
        "cpuCFSQuotaPeriod": "100ms",
        "nodeStatusMaxImages": 50,
        "maxOpenFiles": 1000000,
        "contentType": "application/vnd.kubernetes.protobuf",
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100,
        "serializeImagePulls": False,
        "evictionHard": {
            "imagefs.available": "15%",
            "memory.available": "100Mi",
            "nodefs.available": "10%",
            "nodefs.inodesFree": "5%",
            "pid.available": "10%",
        },
        "evictionPressureTransitionPeriod": "5m0s",
        "enableControllerAttachDetach": True,
        "protectKernelDefaults": True,
        "makeIPTablesUtilChains": True,
        "iptablesMasqueradeBit": 14,
        "iptablesDropBit": 15,
        "featureGates": {"RotateKubeletServerCertificate": True, "ExecProbeTimeout": False},
        "failSwapOn": True,
        "memorySwap": {},
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 5,
        "configMapAndSecretChangeDetectionStrategy": "Watch",
        "kubeReserved": {"cpu": "80m", "ephemeral-storage": "41248865Ki", "memory": "1843Mi"},
        "enforceNodeAllocatable": ["pods"],
        "volumePluginDir": "/home/kubernetes/flexvolume",
        "providerID": provider_id,
        "logging": {
            "format": "text",
            "flushFrequency": "5s",
            "verbosity": 2,
            "options": {"json": {"infoBufferSize": "0"}},
        },
        "enableSystemLogHandler": True,
        "shutdownGracePeriod": "30s",
        "shutdownGracePeriodCriticalPods": "15s",
        "enableProfilingHandler": True,
        "enableDebugFlagsHandler": True,
        "seccompDefault": False,
        "memoryThrottlingFactor": 0.9,
        "registerNode": True,
        "localStorageCapacityIsolation": True,
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
    }
    for key, value in (overrides or {}).items():
        name = KUBELET_FIELDS.get(key)
        if name is None or key == "insecure_kubelet_readonly_port_enabled":
            continue
        if isinstance(value, dict) and "value" in value:  # BoolValue wrappers
            value = value["value"]
        if hasattr(value, "__iter__") and not isinstance(value, str | dict):
            value = list(value)
        cfg[name] = value
    return {"kubeletconfig": cfg}


def configz_bytes(*args: Any, **kwargs: Any) -> bytes:
    return json.dumps(configz(*args, **kwargs)).encode()


def short_hash(*parts: object, n: int = 5, alphabet: str = "bcdfghjklmnpqrstvwxz2456789") -> str:
    """Kubernetes-style random suffix, but deterministic."""
    digest = hashlib.sha1("/".join(str(p) for p in parts).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])
