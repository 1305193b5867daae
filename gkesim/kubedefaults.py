"""What the API server fills in on created pods and controllers, and how it validates controllers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gkesim.kubeapi import KubeError

if TYPE_CHECKING:
    from gkesim.kubeapi import Resource


def _qos(containers: list[dict[str, Any]]) -> str:
    if any(
        (c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits")
        for c in containers
    ):
        return "Burstable"
    return "BestEffort"


def _default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for c in spec.get("containers") or []:
        c.setdefault("resources", {})
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        image = c.get("image", "")
        c.setdefault(
            "imagePullPolicy",
            "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] else "IfNotPresent",
        )


def _default_controller(resource: str, body: dict[str, Any]) -> None:
    spec = body.setdefault("spec", {})
    spec.setdefault("revisionHistoryLimit", 10)
    if resource == "daemonsets":
        spec.setdefault(
            "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
        )
    else:
        spec.setdefault("replicas", 1)
        spec.setdefault(
            "strategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        )
        spec.setdefault("progressDeadlineSeconds", 600)
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    _default_pod_spec(template.setdefault("spec", {}))


def _validate_controller(res: Resource, body: dict[str, Any]) -> None:
    name = body["metadata"]["name"]
    spec = body.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    prefix = f'{res.kind}.{res.group} "{name}" is invalid'
    if not selector and not (spec.get("selector") or {}).get("matchExpressions"):
        raise KubeError(422, f"{prefix}: spec.selector: Required value", "Invalid")
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        raise KubeError(
            422,
            f"{prefix}: spec.template.metadata.labels: Invalid value: {labels}: `selector` does "
            f"not match template `labels`",
            "Invalid",
        )
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        raise KubeError(422, f"{prefix}: spec.template.spec.containers: Required value", "Invalid")
