"""The Container REST front end (what gcloud talks to), driven over plain HTTP: no gcloud needed."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gkesim.clock import ManualClock
from gkesim.fleet import Fleet
from gkesim.rest import RestServer, read_gcloud_env, write_gcloud_env
from gkesim.spec import FleetSpec

STD = "projects/alpha/locations/us-central1/clusters/std"
FLEET: dict[str, Any] = {
    "projects": [
        {
            "id": "alpha",
            "clusters": [
                {
                    "name": "std",
                    "location": "us-central1",
                    "pools": [
                        {
                            "name": "tuned",
                            "nodes": 1,
                            "kubelet": {"cpu_manager_policy": "static", "pod_pids_limit": 4096},
                        },
                        {"name": "plain", "nodes": 2},
                    ],
                },
                {"name": "auto", "location": "europe-west1", "mode": "autopilot"},
                {"name": "zonal", "location": "us-east1-b", "default_port": "disabled"},
            ],
        },
        {"id": "denied", "clusters": [{"name": "x"}]},
    ],
    "faults": {"permission_denied_projects": ["denied"]},
}


class Rest:
    def __init__(self, server: RestServer, fleet: Fleet) -> None:
        self.server = server
        self.fleet = fleet
        self.base = f"http://127.0.0.1:{server.port}"

    def call(
        self, verb: str, path: str, body: Any = None, token: str | None = "anything"
    ) -> tuple[int, dict[str, Any]]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=verb)
        req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def _rest(fleet_dict: dict[str, Any]) -> Iterator[Rest]:
    fleet = Fleet(FleetSpec.model_validate(fleet_dict), ManualClock())
    server = RestServer(fleet)
    server.start()
    try:
        yield Rest(server, fleet)
    finally:
        server.stop()


@pytest.fixture
def rest() -> Iterator[Rest]:
    yield from _rest(FLEET)


def test_list_get_in_googles_json(rest: Rest) -> None:
    code, body = rest.call("GET", "/v1/projects/alpha/locations/-/clusters?alt=json")
    assert code == 200
    assert sorted(c["name"] for c in body["clusters"]) == ["auto", "std", "zonal"]
    std = next(c for c in body["clusters"] if c["name"] == "std")
    assert std["status"] == "RUNNING"  # enum names, camelCase, not integers or snake_case
    tuned = std["nodePools"][0]
    assert tuned["config"]["kubeletConfig"] == {"cpuManagerPolicy": "static", "podPidsLimit": "4096"}
    assert "insecureKubeletReadonlyPortEnabled" not in tuned["config"]["kubeletConfig"]  # unset stays absent

    code, one = rest.call("GET", "/v1/projects/alpha/locations/us-east1-b/clusters")
    assert code == 200 and [c["name"] for c in one["clusters"]] == ["zonal"]

    code, cluster = rest.call("GET", f"/v1/{STD}")
    assert code == 200 and cluster["name"] == "std" and cluster["location"] == "us-central1"
    code, same = rest.call("GET", "/v1/projects/alpha/zones/us-central1/clusters/std")  # gcloud's self links
    assert code == 200 and same == cluster
    code, zonal = rest.call("GET", "/v1/projects/alpha/locations/us-east1-b/clusters/zonal")
    assert zonal["nodePoolDefaults"]["nodeConfigDefaults"]["nodeKubeletConfig"] == {
        "insecureKubeletReadonlyPortEnabled": False
    }

    code, pools = rest.call("GET", f"/v1/{STD}/nodePools")
    assert code == 200 and [p["name"] for p in pools["nodePools"]] == ["tuned", "plain"]
    code, pool = rest.call("GET", "/v1/projects/alpha/zones/us-central1/clusters/std/nodePools/plain")
    assert code == 200 and pool["name"] == "plain" and pool["initialNodeCount"] == 2
    assert rest.server.calls["GetCluster"] == 3 and rest.server.calls["ListClusters"] == 2


def test_cluster_update_as_gcloud_sends_it_then_poll_the_operation(rest: Rest) -> None:
    body = {"update": {"desiredNodeKubeletConfig": {"insecureKubeletReadonlyPortEnabled": False}}}
    code, op = rest.call("PUT", f"/v1/{STD}", body)
    assert code == 200
    assert op["status"] == "RUNNING" and op["operationType"] == "UPDATE_CLUSTER"
    op_path = f"/v1/projects/alpha/locations/us-central1/operations/{op['name']}"
    code, again = rest.call("GET", op_path)
    assert code == 200 and again["status"] == "RUNNING"
    _, cluster = rest.call("GET", f"/v1/{STD}")
    assert cluster["status"] == "RECONCILING"

    # A second change while the first runs: GKE's FAILED_PRECONDITION, as HTTP 400.
    code, err = rest.call("PUT", f"/v1/{STD}", body)
    assert code == 400 and err["error"]["status"] == "FAILED_PRECONDITION"
    assert "incompatible operation" in err["error"]["message"] and err["error"]["code"] == 400

    rest.fleet.clock.advance(3600)
    code, done = rest.call("GET", f"/v1/projects/alpha/zones/us-central1/operations/{op['name']}")
    assert code == 200 and done["status"] == "DONE" and "endTime" in done
    _, cluster = rest.call("GET", f"/v1/{STD}")
    assert cluster["nodePoolDefaults"]["nodeConfigDefaults"]["nodeKubeletConfig"] == {
        "insecureKubeletReadonlyPortEnabled": False
    }
    code, ops = rest.call("GET", "/v1/projects/alpha/locations/-/operations")
    assert code == 200 and [o["name"] for o in ops["operations"]] == [op["name"]]


def test_node_pool_update_replaces_the_kubelet_config_as_sent(rest: Rest) -> None:
    """gcloud's body carries only the port field: under replace semantics the pool's other settings go."""
    pool = f"{STD}/nodePools/tuned"
    body = {"kubeletConfig": {"insecureKubeletReadonlyPortEnabled": False}, "name": pool}
    code, op = rest.call("PUT", f"/v1/{pool}", body)
    assert code == 200 and op["operationType"] == "UPGRADE_NODES"
    assert op["targetLink"].endswith("/clusters/std/nodePools/tuned")
    rest.fleet.clock.advance(3600)
    _, after = rest.call("GET", f"/v1/{pool}")
    assert after["config"]["kubeletConfig"] == {"insecureKubeletReadonlyPortEnabled": False}
    lost = {entry["setting"] for entry in rest.fleet.lost_settings()}
    assert lost == {"cpu_manager_policy", "pod_pids_limit"}

    # The whole config sent back (what Portcullis does) restores them; the zones form uses POST .../update.
    whole = {"kubeletConfig": {"cpuManagerPolicy": "static", "podPidsLimit": "4096",
                               "insecureKubeletReadonlyPortEnabled": False}}  # fmt: skip
    code, op = rest.call(
        "POST", "/v1/projects/alpha/zones/us-central1/clusters/std/nodePools/tuned/update", whole
    )
    assert code == 200
    rest.fleet.clock.advance(3600)
    assert rest.fleet.lost_settings() == []
    assert [e.method for e in rest.fleet.journal] == ["UpdateNodePool", "UpdateNodePool"]


def test_errors_are_googles_json_error_body(rest: Rest) -> None:
    code, err = rest.call("GET", "/v1/projects/alpha/locations/us-central1/clusters/nope")
    assert code == 404 and err["error"]["status"] == "NOT_FOUND" and err["error"]["code"] == 404
    code, err = rest.call("GET", "/v1/projects/denied/locations/-/clusters")
    assert code == 403 and err["error"]["status"] == "PERMISSION_DENIED"
    code, err = rest.call("GET", "/v1/projects/alpha/locations/-/clusters", token=None)
    assert code == 401 and err["error"]["status"] == "UNAUTHENTICATED"
    code, err = rest.call("PUT", f"/v1/{STD}", b"{not json")
    assert code == 400 and err["error"]["status"] == "INVALID_ARGUMENT"
    code, err = rest.call("PUT", f"/v1/{STD}", {"update": {"desiredNoSuchThing": 1}})
    assert code == 400 and "Invalid JSON payload" in err["error"]["message"]
    code, err = rest.call(
        "PUT",
        "/v1/projects/alpha/locations/europe-west1/clusters/auto",
        {"update": {"desiredNodeKubeletConfig": {"insecureKubeletReadonlyPortEnabled": False}}},
    )
    assert code == 400 and "Autopilot" in err["error"]["message"]
    code, err = rest.call("POST", f"/v1/{STD}:setResourceLabels", {})
    assert code == 501 and err["error"]["status"] == "UNIMPLEMENTED"
    code, err = rest.call("DELETE", f"/v1/{STD}")
    assert code == 501
    code, err = rest.call("GET", "/v2/whatever")
    assert code == 404


def test_faults_apply_per_call_like_the_grpc_front_end() -> None:
    fleet = dict(FLEET, faults={"quota_per_minute": 2, "latency_ms": {"GetCluster": 150}})
    for rest in _rest(fleet):
        t0 = time.perf_counter()
        assert rest.call("GET", f"/v1/{STD}")[0] == 200
        assert time.perf_counter() - t0 >= 0.15
        assert rest.call("GET", f"/v1/{STD}/nodePools")[0] == 200
        code, err = rest.call("GET", f"/v1/{STD}/nodePools")
        assert code == 429 and err["error"]["status"] == "RESOURCE_EXHAUSTED"
        types = {d["@type"].rsplit(".", 1)[-1] for d in err["error"]["details"]}
        assert types == {"ErrorInfo", "RetryInfo"}
    fleet = dict(FLEET, faults={"error_rates": {"GetOperation": {"UNAVAILABLE": 1.0}}})
    for rest in _rest(fleet):
        code, err = rest.call("GET", "/v1/projects/alpha/locations/us-central1/operations/operation-1")
        assert code == 503 and err["error"]["status"] == "UNAVAILABLE"


def test_gcloud_env_file(tmp_path: Path) -> None:
    path = write_gcloud_env(tmp_path / "sim" / "gcloud.env", "127.0.0.1:4321")
    env = read_gcloud_env(path)
    assert env["CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER"] == "http://127.0.0.1:4321/"
    assert Path(env["CLOUDSDK_AUTH_ACCESS_TOKEN_FILE"]).read_text().strip()
    assert Path(env["CLOUDSDK_CONFIG"]).is_dir()
    assert env["CLOUDSDK_CORE_DISABLE_PROMPTS"] == "1"
    assert "CLOUDSDK_CORE_PROJECT" not in env
    assert all(line.startswith(("#", "export ")) for line in path.read_text().splitlines())
    with pytest.raises(ValueError):
        write_gcloud_env(tmp_path / "x.env", type("E", (), {"rest": None})())


def test_simulator_serves_rest(make_sim: Any) -> None:
    sim = make_sim(FLEET)
    assert sim.endpoints.rest
    req = urllib.request.Request(
        f"http://{sim.endpoints.rest}/v1/projects/alpha/locations/-/clusters",
        headers={"Authorization": "Bearer t"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        clusters = json.loads(resp.read())["clusters"]
    # The Kubernetes endpoint the simulator assigned shows through REST as it does through gRPC.
    assert all(c["endpoint"].startswith(sim.endpoints.kube) for c in clusters)
