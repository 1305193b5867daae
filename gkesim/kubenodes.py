"""Node objects built from the fleet's current nodes, and the zones and addresses of nodes and pods."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gkesim.kubeapi import _h, _uid, timestamp

if TYPE_CHECKING:
    from gkesim.fleet import Fleet, SimCluster, SimNode


def node_zone(cluster: SimCluster, node: SimNode) -> str:
    loc = cluster.location
    if re.search(r"-[a-z]$", loc):
        return loc
    return f"{loc}-{'abcf'[_h(node.name) % 3]}"


def node_ip(cluster: SimCluster, node: SimNode) -> str:
    h = _h(cluster.path, node.name)
    return f"10.{128 + (h >> 40) % 64}.{(h >> 8) % 256}.{2 + h % 250}"


def pod_ip(cluster: SimCluster, node: SimNode, name: str) -> str:
    h = _h(cluster.path, node.name)
    return f"10.{4 + (h >> 40) % 60}.{(h >> 8) % 256}.{2 + _h(name) % 250}"


def node_object(fleet: Fleet, cluster: SimCluster, node: SimNode) -> dict[str, Any]:
    zone = node_zone(cluster, node)
    version = cluster.msg.current_master_version
    for pool in cluster.msg.node_pools:
        if pool.name == node.pool:
            version = pool.version or version
    created = timestamp(fleet, node.booted_at)
    ready_at = timestamp(fleet, node.booted_at + 40)
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": "e2-standard-4",
        "beta.kubernetes.io/os": "linux",
        "cloud.google.com/gke-boot-disk": "pd-balanced",
        "cloud.google.com/gke-container-runtime": "containerd",
        "cloud.google.com/gke-nodepool": node.pool,
        "cloud.google.com/gke-os-distribution": "cos",
        "cloud.google.com/machine-family": "e2",
        "cloud.google.com/private-node": "false",
        "failure-domain.beta.kubernetes.io/region": zone.rsplit("-", 1)[0],
        "failure-domain.beta.kubernetes.io/zone": zone,
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "e2-standard-4",
        "topology.gke.io/zone": zone,
        "topology.kubernetes.io/region": zone.rsplit("-", 1)[0],
        "topology.kubernetes.io/zone": zone,
    }
    if cluster.autopilot:
        labels["cloud.google.com/gke-provisioning"] = "standard"
        labels["cloud.google.com/compute-class"] = "autopilot"
    conditions = [
        {
            "type": t,
            "status": "False",
            "lastHeartbeatTime": ready_at,
            "lastTransitionTime": created,
            "reason": r,
            "message": m,
        }
        for t, r, m in (
            ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        )
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "lastHeartbeatTime": ready_at,
            "lastTransitionTime": ready_at,
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status. AppArmor enabled",
        }
    )
    ip = node_ip(cluster, node)
    h = _h(cluster.path, node.name)
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": node.name,
            "uid": _uid(cluster.path, node.name, node.booted_at),
            "resourceVersion": str(1000 + int(node.booted_at)),
            "creationTimestamp": created,
            "labels": labels,
            "annotations": {
                "container.googleapis.com/instance_id": str(1_000_000_000_000_000 + h % 10**18),
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": f"10.{4 + (h >> 40) % 60}.{(h >> 8) % 256}.0/24",
            "podCIDRs": [f"10.{4 + (h >> 40) % 60}.{(h >> 8) % 256}.0/24"],
            "providerID": f"gce://{cluster.project}/{zone}/{node.name}",
        },
        "status": {
            "capacity": {
                "cpu": "4",
                "ephemeral-storage": "98831908Ki",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "memory": "16393220Ki",
                "pods": "110",
            },
            "allocatable": {
                "cpu": "3920m",
                "ephemeral-storage": "47060071478",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "memory": "13255684Ki",
                "pods": "110",
            },
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {
                    "type": "ExternalIP",
                    "address": f"34.{(h >> 16) % 200 + 20}.{(h >> 24) % 256}.{(h >> 32) % 254 + 1}",
                },
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{h:016x}{h:016x}",
                "systemUUID": _uid("system", node.name),
                "bootID": _uid("boot", node.name, node.booted_at),
                "kernelVersion": "6.1.100+",
                "osImage": "Container-Optimized OS from Google",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kubeletVersion": "v" + version,
                "kubeProxyVersion": "v" + version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }
