"""The seed document's commands, exactly as written there (line continuations joined), with its placeholders.

Tests substitute the placeholders (CLUSTER_NAME, LOCATION, NODE_POOL_NAME, NODE_NAME) and run the result with
`sh -c`, so pipes and quoting behave as in the operator's shell. `bench/manual_baseline.py` runs the same strings.
The culprit searches are from the current English page (the Japanese seed predates them).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

# "Standard モードでポートの使用状況を確認する"
STANDARD_CHECK = (
    "kubectl get --raw /api/v1/nodes/NODE_NAME/proxy/metrics | grep http_requests_total | grep readonly"
)
# "Autopilot モードでポートの使用状況を確認する", steps 2 and 3 (the manifest is read-only-port-metrics.yaml here)
AUTOPILOT_CREATE = "kubectl create -f read-only-port-metrics.yaml"
AUTOPILOT_LOGS = (
    "kubectl logs --namespace=node-metrics-printer-namespace --all-containers --prefix "
    "--selector=app=node-metrics-printer"
)
AUTOPILOT_DELETE = "kubectl delete -f read-only-port-metrics.yaml"  # not in the seed: the clean-up it implies
# (EN) naming the culprits
CULPRIT_PODS = "kubectl get pods --all-namespaces -o yaml | grep 10255"
CULPRIT_CONFIGMAPS = "kubectl get configmaps --all-namespaces -o yaml | grep 10255"
# the migration step: the cluster CA for clients of port 10250
CLUSTER_CA = 'gcloud container clusters describe CLUSTER_NAME --location=LOCATION --format="value(masterAuth.clusterCaCertificate)"'  # noqa: E501
# disabling
AUTOPILOT_DISABLE = (
    "gcloud container clusters update CLUSTER_NAME --location=LOCATION "
    "--no-autoprovisioning-enable-insecure-kubelet-readonly-port"
)
STANDARD_DISABLE = "gcloud container clusters update CLUSTER_NAME --location=LOCATION --no-enable-insecure-kubelet-readonly-port"
POOL_DISABLE = (
    "gcloud container node-pools update NODE_POOL_NAME --cluster=CLUSTER_NAME --location=LOCATION "
    "--no-enable-insecure-kubelet-readonly-port"
)
# "ポートが無効になっていることを確認する"
AUTOPILOT_VERIFY = (
    "gcloud container clusters describe CLUSTER_NAME --location=LOCATION --flatten=nodePoolAutoConfig "
    '--format="value(nodeKubeletConfig)"'
)
STANDARD_VERIFY = (
    "gcloud container clusters describe CLUSTER_NAME --location=LOCATION "
    '--flatten=nodePoolDefaults.nodeConfigDefaults --format="value(nodeKubeletConfig)"'
)
POOL_VERIFY = (
    "gcloud container node-pools describe NODE_POOL_NAME --cluster=CLUSTER_NAME --location=LOCATION "
    '--flatten=config --format="value(kubeletConfig)"'
)
# What the seed prints after a successful disable, for all three verification commands.
SEED_PROMISE = "insecureKubeletReadonlyPortEnabled: false"

FROM_SEED = {
    "STANDARD_CHECK": STANDARD_CHECK,
    "AUTOPILOT_CREATE": AUTOPILOT_CREATE,
    "AUTOPILOT_LOGS": AUTOPILOT_LOGS,
    "CLUSTER_CA": CLUSTER_CA,
    "AUTOPILOT_DISABLE": AUTOPILOT_DISABLE,
    "STANDARD_DISABLE": STANDARD_DISABLE,
    "POOL_DISABLE": POOL_DISABLE,
    "AUTOPILOT_VERIFY": AUTOPILOT_VERIFY,
    "STANDARD_VERIFY": STANDARD_VERIFY,
    "POOL_VERIFY": POOL_VERIFY,
}

MANIFEST = Path(__file__).resolve().parent / "read-only-port-metrics.yaml"  # the seed's manifest, verbatim

SEED_LOCATIONS = (
    Path(__file__).resolve().parents[2] / "seed" / "disable-kubelet-readonly-port.ja.txt",
    Path("/work/shared/seed/disable-kubelet-readonly-port.ja.txt"),
)


def fill(template: str, **names: str) -> str:
    """The command with the seed's placeholders replaced (CLUSTER_NAME=..., LOCATION=..., ...)."""
    out = template
    for key in ("NODE_POOL_NAME", "CLUSTER_NAME", "NODE_NAME", "LOCATION"):
        if key in names:
            out = out.replace(key, shlex.quote(names[key]))
    missing = [k for k in ("NODE_POOL_NAME", "CLUSTER_NAME", "NODE_NAME", "LOCATION") if k in out]
    if missing:
        raise ValueError(f"{template!r} still needs {missing}")
    return out


def normalise_value(output: str) -> str:
    """gcloud's `value(...)` rendering (`a=False;b=static`) written the way the seed prints it (`a: false`).

    Only gcloud's value formatting changes: `=` becomes `: `, Python booleans become YAML ones.
    """
    items = [part for part in output.strip().split(";") if part]
    out = []
    for item in items:
        key, _, value = item.partition("=")
        out.append(f"{key}: {({'True': 'true', 'False': 'false'}).get(value, value)}")
    return "\n".join(out)


def seed_text() -> str | None:
    for path in SEED_LOCATIONS:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def seed_commands_joined(text: str) -> str:
    """The seed with shell line continuations joined and runs of spaces collapsed, for substring checks."""
    return re.sub(r"[ \t]+", " ", re.sub(r"\\\n\s*", " ", text))
