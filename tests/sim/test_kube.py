"""gkesim's Kubernetes API servers, driven by the real `kubernetes` client (TLS verified) and by real kubectl."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
import time
import zlib

import pytest
import urllib3
from google.cloud import container_v1
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from gkesim.clock import Clock
from gkesim.kube import write_kubeconfig
from gkesim.kubelet import FAMILY
from tests.sim.kube_helpers import (
    AUTO,
    BADCA,
    EMPTY,
    FORBIDDEN,
    HANG,
    NEVER,
    STD,
    api_client,
    family_value,
    make_fleet,
    readonly_lines,
    running,
    small_spec,
)

PROBE_NS = "node-metrics-printer-namespace"


@pytest.fixture(scope="module")
def shared():
    """A fleet and server for the read-only tests (module scope: the metrics payload is built once)."""
    fleet = make_fleet()
    with running(fleet) as server:
        yield fleet, server


@pytest.fixture
def fresh():
    """A fleet of its own, for tests that change state or move the clock."""
    fleet = make_fleet()
    with running(fleet, metrics_bytes=300_000) as server:
        yield fleet, server


def core(fleet, path) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(fleet.clusters[path]))


def metrics(fleet, path, node: str) -> str:
    return core(fleet, path).connect_get_node_proxy_with_path(node, "metrics")


def configz(api: client.CoreV1Api, node: str) -> dict:
    """The kubelet's /configz (application/json: read raw, or the client turns it into a Python repr string)."""
    import json

    resp = api.connect_get_node_proxy_with_path(node, "configz", _preload_content=False)
    return json.loads(resp.data)["kubeletconfig"]


def nodes_of(fleet, path, pool: str) -> list[str]:
    return [n.name for n in fleet.clusters[path].nodes[pool]]


# ----- endpoints, TLS and auth ----------------------------------------------------------------------------------


def test_every_cluster_gets_an_endpoint_and_a_ca(shared):
    fleet, server = shared
    for path, cluster in fleet.clusters.items():
        project, location, name = path.split("/")[1::2]
        assert cluster.msg.endpoint == f"127.0.0.1:{server.port}/k8s/{project}/{location}/{name}"
        ca = base64.b64decode(cluster.msg.master_auth.cluster_ca_certificate)
        assert ca.startswith(b"-----BEGIN CERTIFICATE-----")
        assert (ca == server.ca_pem) == (path != BADCA)


def test_wrong_ca_fails_tls_verification(shared):
    fleet, _ = shared
    with pytest.raises(urllib3.exceptions.MaxRetryError) as err:
        core(fleet, BADCA).list_node()
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def test_bad_token_is_401_status(shared):
    fleet, _ = shared
    api = client.CoreV1Api(api_client(fleet.clusters[STD], token="wrong"))
    with pytest.raises(ApiException) as err:
        api.list_node()
    assert err.value.status == 401
    assert '"kind":"Status"' in err.value.body and '"reason":"Unauthorized"' in err.value.body


def test_version_and_discovery(shared):
    fleet, _ = shared
    api = api_client(fleet.clusters[STD])
    assert client.VersionApi(api).get_code().git_version == "v1.30.5-gke.1014001"
    names = {r.name for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {
        "nodes",
        "nodes/proxy",
        "pods",
        "pods/log",
        "configmaps",
        "namespaces",
        "serviceaccounts",
    } <= names
    assert {r.name for r in client.AppsV1Api(api).get_api_resources().resources} >= {"daemonsets"}
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "rbac.authorization.k8s.io"} <= groups


def _raw(fleet, path: str, accept: str):
    """GET a path of the cluster's API with this Accept header (TLS verified, bearer token); status, headers, data."""
    api = api_client(fleet.clusters[STD])
    method, url, headers, body, _ = api.param_serialize(
        "GET", path, header_params={"Accept": accept}, auth_settings=["BearerToken"]
    )
    resp = api.call_api(method, url, header_params=headers, body=body)
    resp.read()
    if resp.status >= 400:
        raise ApiException(http_resp=resp)
    return resp


V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"  # what kubectl 1.27/1.28 ask for


def test_openapi_v2_protobuf_describes_every_served_kind(shared):
    """kubectl 1.27/1.28 parse /openapi/v2 as gnostic's openapi.v2.Document before `kubectl create`."""
    import yaml

    from gkesim.kubeapi import RESOURCES
    from gkesim.openapi_pb import Document

    fleet, _ = shared
    resp = _raw(fleet, "/openapi/v2", V2_PROTOBUF)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    doc = Document.FromString(resp.data)
    assert doc.swagger == "2.0" and doc.info.version == "v1.30.5-gke.1014001"

    definitions = {d.name: d.value for d in doc.definitions.additional_properties}
    kinds = {}
    for name, schema in definitions.items():
        for ext in schema.vendor_extension:
            if ext.name == "x-kubernetes-group-version-kind":
                for gvk in yaml.safe_load(ext.value.yaml):
                    kinds[(gvk["group"], gvk["version"], gvk["kind"])] = name
    # The seed manifest's kinds, and every other kind gkesim serves, with their list kinds.
    for res in RESOURCES.values():
        assert (res.group, res.version, res.kind) in kinds, res.kind
        assert (res.group, res.version, f"{res.kind}List") in kinds, res.kind
    assert kinds[("apps", "v1", "DaemonSet")] == "io.k8s.api.apps.v1.DaemonSet"
    assert (
        kinds[("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding")]
        == "io.k8s.api.rbac.v1.ClusterRoleBinding"
    )

    # Every reference resolves (kube-openapi refuses a document with a dangling one).
    def refs(schema):
        if schema._ref:
            yield schema._ref
        for prop in schema.properties.additional_properties:
            yield from refs(prop.value)
        for item in schema.items.schema:
            yield from refs(item)
        if schema.additional_properties.HasField("schema"):
            yield from refs(schema.additional_properties.schema)

    for schema in definitions.values():
        for ref in refs(schema):
            assert ref.removeprefix("#/definitions/") in definitions, ref

    # What the seed's DaemonSet uses is described, with the required fields.
    spec = definitions["io.k8s.api.apps.v1.DaemonSetSpec"]
    assert set(spec.required) == {"selector", "template"}
    container = definitions["io.k8s.api.core.v1.Container"]
    fields = {p.name: p.value for p in container.properties.additional_properties}
    assert {"name", "image", "command", "args", "env"} <= set(fields)
    assert list(fields["args"].type.value) == ["array"] and list(
        fields["args"].items.schema[0].type.value
    ) == ["string"]
    env_source = definitions["io.k8s.api.core.v1.EnvVarSource"]
    assert "fieldRef" in {p.name for p in env_source.properties.additional_properties}

    # Each kind's PATCH operation lists fieldValidation: kubectl then lets the server validate (fieldValidation=Strict).
    paths = {p.name: p.value for p in doc.paths.path}
    patch = paths["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"].patch
    gvk = {e.name: yaml.safe_load(e.value.yaml) for e in patch.vendor_extension}[
        "x-kubernetes-group-version-kind"
    ]
    assert gvk == {"group": "apps", "kind": "DaemonSet", "version": "v1"}
    queries = {
        p.parameter.non_body_parameter.query_parameter_sub_schema.name
        for p in patch.parameters
        if p.parameter.non_body_parameter.HasField("query_parameter_sub_schema")
    }
    assert "fieldValidation" in queries
    for res in RESOURCES.values():
        prefix = f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}"
        scope = "/namespaces/{namespace}" if res.namespaced else ""
        assert paths[f"{prefix}{scope}/{res.plural}/{{name}}"].HasField("patch"), res.plural


def test_openapi_v2_json_is_the_same_document(shared):
    import json

    from gkesim.openapi_pb import Document

    fleet, _ = shared
    resp = _raw(fleet, "/openapi/v2", "application/json")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    doc = json.loads(resp.data)
    pb = Document.FromString(_raw(fleet, "/openapi/v2", V2_PROTOBUF).data)
    assert set(doc["definitions"]) == {d.name for d in pb.definitions.additional_properties}
    assert set(doc["paths"]) == {p.name for p in pb.paths.path}
    # Accept order and q values decide; nothing acceptable is 406.
    both = f"application/json;q=0.5, {V2_PROTOBUF}"
    assert _raw(fleet, "/openapi/v2", both).data == _raw(fleet, "/openapi/v2", V2_PROTOBUF).data
    assert _raw(fleet, "/openapi/v2", "*/*").headers["Content-Type"] == "application/json"
    with pytest.raises(ApiException) as err:
        _raw(fleet, "/openapi/v2", "text/html")
    assert err.value.status == 406


def test_openapi_v3_documents_carry_the_schemas(shared):
    """kubectl create/apply read the PATCH operations of v3 (fieldValidation); kubectl explain reads the schemas."""
    import json

    fleet, _ = shared
    index = json.loads(_raw(fleet, "/openapi/v3", "application/json").data)["paths"]
    assert set(index) == {"api/v1", "apis/apps/v1", "apis/rbac.authorization.k8s.io/v1"}
    urls = {entry["serverRelativeURL"] for entry in index.values()}
    assert len({url.partition("hash=")[2] for url in urls}) == 3  # one digest per document
    apps = json.loads(_raw(fleet, index["apis/apps/v1"]["serverRelativeURL"], "application/json").data)
    schemas = apps["components"]["schemas"]
    ds = schemas["io.k8s.api.apps.v1.DaemonSet"]
    assert ds["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "DaemonSet", "version": "v1"}]
    assert "io.k8s.api.core.v1.PodSpec" in schemas  # what the kinds reference comes along
    assert "io.k8s.api.rbac.v1.ClusterRole" not in schemas  # other groups' kinds do not
    patch = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"]["patch"]
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert (
        "requestBody" not in patch
    )  # see gkesim.kube_openapi: kubectl keeps its own strategic-merge metadata


# ----- nodes and the kubelet behind the node proxy -----------------------------------------------------------------


def test_nodes_by_pool_label(shared):
    fleet, _ = shared
    api = core(fleet, STD)
    assert len(api.list_node().items) == 5
    busy = api.list_node(label_selector="cloud.google.com/gke-nodepool=busy").items
    assert sorted(n.metadata.name for n in busy) == sorted(nodes_of(fleet, STD, "busy"))
    node = busy[0]
    assert node.metadata.labels["kubernetes.io/hostname"] == node.metadata.name
    assert any(a.type == "InternalIP" for a in node.status.addresses)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert api.read_node(node.metadata.name).metadata.name == node.metadata.name
    other = api.list_node(label_selector="cloud.google.com/gke-nodepool in (old,clean)").items
    assert len(other) == 2
    with pytest.raises(ApiException) as err:
        api.read_node("no-such-node")
    assert err.value.status == 404


def test_metrics_payload_size_and_readonly_lines(shared):
    fleet, _ = shared
    busy, old, clean = (nodes_of(fleet, STD, p)[0] for p in ("busy", "old", "clean"))
    text = metrics(fleet, STD, busy)
    assert len(text.encode()) >= 2_000_000
    start = text.index(f"# HELP {FAMILY} ")
    assert 0.05 < start / len(text) < 0.95  # neither at the start nor at the end
    lines = readonly_lines(text)
    assert [line.split('path="')[1].split('"')[0] for line in lines] == ["metrics", "pods", "stats"]
    for line in lines:
        assert line.startswith('kubelet_http_requests_total{long_running="false",method="GET",path="')
        assert line.endswith('",server_type="readonly"} 40')  # in_use base at t=0
    assert family_value(text, "metrics", "readwrite") >= 1  # our own read counts as readwrite
    assert f'kubelet_node_name{{node="{busy}"}} 1' in text
    assert [line.rsplit(" ", 1)[1] for line in readonly_lines(metrics(fleet, STD, old))] == ["120"] * 3
    clean_text = metrics(fleet, STD, clean)
    assert readonly_lines(clean_text) == []
    assert family_value(clean_text, "metrics", "readwrite") >= 1


def test_metrics_parse_with_prometheus_client(shared):
    from prometheus_client.parser import text_string_to_metric_families

    fleet, _ = shared
    text = metrics(fleet, STD, nodes_of(fleet, STD, "busy")[0])
    wanted = "\n".join(line for line in text.splitlines() if line.startswith(FAMILY)) + "\n"
    samples = [s for fam in text_string_to_metric_families(wanted) for s in fam.samples]
    readonly = {s.labels["path"]: s.value for s in samples if s.labels["server_type"] == "readonly"}
    assert readonly == {"metrics": 40.0, "pods": 40.0, "stats": 40.0}


def test_metrics_streamed_with_content_length(shared):
    fleet, _ = shared
    node = nodes_of(fleet, STD, "busy")[1]
    resp = core(fleet, STD).connect_get_node_proxy_with_path(node, "metrics", _preload_content=False)
    length = int(resp.headers["Content-Length"])
    got = 0
    for chunk in resp.stream(65536):
        got += len(chunk)
    assert got == length >= 2_000_000
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def _metrics_raw(fleet, node: str, accept_encoding: str) -> tuple[str | None, bytes]:
    resp = core(fleet, STD).connect_get_node_proxy_with_path(
        node, "metrics", _preload_content=False, _headers={"Accept-Encoding": accept_encoding}
    )
    body = b"".join(resp.stream(65536, decode_content=False))
    assert len(body) == int(resp.headers["Content-Length"])
    return resp.headers.get("Content-Encoding"), body


def test_metrics_gzip_when_asked_same_text_as_plain(shared):
    """The kubelet compresses /metrics for a client that asks (Prometheus does); the text is the same."""
    fleet, _ = shared
    node = nodes_of(fleet, STD, "busy")[0]
    encoding, body = _metrics_raw(fleet, node, "gzip, deflate")
    assert encoding == "gzip" and len(body) < 300_000
    inflated, rest = b"", body
    while rest:  # a series of gzip members
        member = zlib.decompressobj(zlib.MAX_WBITS | 16)
        inflated += member.decompress(rest)
        assert member.eof
        rest = member.unused_data
    assert len(inflated) >= 2_000_000
    plain_encoding, plain = _metrics_raw(fleet, node, "identity")
    assert plain_encoding is None and len(plain) >= 2_000_000

    def family(data: bytes) -> list[str]:  # the counters move between reads: compare the series, not values
        return [line.rsplit(" ", 1)[0] for line in data.decode().splitlines() if line.startswith(FAMILY)]

    assert family(inflated) == family(plain) and len(family(plain)) >= 3
    assert _metrics_raw(fleet, node, "gzip;q=0, identity")[0] is None


def test_readonly_counters_grow_over_time_only_when_in_use(fresh):
    fleet, _ = fresh
    busy, old, clean = (nodes_of(fleet, STD, p)[0] for p in ("busy", "old", "clean"))
    first = {n: metrics(fleet, STD, n) for n in (busy, old, clean)}
    fleet.clock.advance(600)  # ten minutes at 6 requests per minute per path
    second = {n: metrics(fleet, STD, n) for n in (busy, old, clean)}
    assert family_value(first[busy], "stats", "readonly") == 40
    assert family_value(second[busy], "stats", "readonly") == 100
    assert (
        family_value(first[old], "stats", "readonly") == family_value(second[old], "stats", "readonly") == 120
    )
    assert readonly_lines(second[clean]) == []
    for n in (busy, old, clean):  # every read of ours is one more readwrite request
        assert family_value(second[n], "metrics", "readwrite") > family_value(
            first[n], "metrics", "readwrite"
        )


def test_configz_shows_the_running_port(shared):
    fleet, _ = shared
    api = core(fleet, STD)

    def cfg(pool: str) -> dict:
        return configz(api, nodes_of(fleet, STD, pool)[0])

    assert cfg("busy")["readOnlyPort"] == 10255
    assert cfg("closed")["readOnlyPort"] == 0
    clean = cfg("clean")
    assert clean["readOnlyPort"] == 10255  # unset on a 1.30 cluster: the old default, open
    assert clean["cpuManagerPolicy"] == "static" and clean["podPidsLimit"] == 4096
    assert clean["port"] == 10250 and clean["authentication"]["anonymous"]["enabled"] is False


def test_forbidden_node_proxy_is_403(shared):
    fleet, _ = shared
    node = nodes_of(fleet, FORBIDDEN, "default-pool")[0]
    for path in (FORBIDDEN, AUTO):
        name = node if path == FORBIDDEN else nodes_of(fleet, AUTO, "default-pool")[0]
        with pytest.raises(ApiException) as err:
            metrics(fleet, path, name)
        assert err.value.status == 403
        import json

        status = json.loads(err.value.body)
        assert status["kind"] == "Status" and status["reason"] == "Forbidden"
        assert status["message"].startswith(f'nodes "{name}" is forbidden: User "')
        assert status["message"].endswith(
            'cannot get resource "nodes/proxy" in API group "" at the cluster scope'
        )
    # the same callers may still list nodes
    assert core(fleet, AUTO).list_node().items


def test_node_read_timeout_hangs_until_the_client_gives_up(shared):
    fleet, _ = shared
    node = nodes_of(fleet, HANG, "default-pool")[0]
    api = core(fleet, HANG)
    assert api.list_node().items  # the API server itself answers
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.HTTPError) as err:  # ReadTimeoutError (or MaxRetryError around it)
        api.connect_get_node_proxy_with_path(node, "metrics", _request_timeout=(5, 1.0))
    assert 0.9 < time.monotonic() - started < 10
    assert "timed out" in str(err.value).lower()


def test_node_read_timeout_rate_is_random(fresh):
    fleet, _ = fresh
    fleet.spec.faults.node_read_timeout_rate = 1.0
    with pytest.raises(urllib3.exceptions.HTTPError):
        core(fleet, STD).connect_get_node_proxy_with_path(
            nodes_of(fleet, STD, "clean")[0], "metrics", _request_timeout=(5, 0.5)
        )
    fleet.spec.faults.node_read_timeout_rate = 0.0
    assert metrics(fleet, STD, nodes_of(fleet, STD, "clean")[0])


def test_node_recreation_changes_names_and_resets_counters(fresh):
    fleet, _ = fresh
    api = core(fleet, STD)
    before = sorted(
        n.metadata.name for n in api.list_node(label_selector="cloud.google.com/gke-nodepool=busy").items
    )
    fleet.clock.advance(300)
    old_text = metrics(fleet, STD, before[0])
    assert family_value(old_text, "stats", "readonly") == 70
    assert family_value(old_text, "healthz", "readwrite") == 30
    pool = fleet.clusters[STD].pool("busy")
    cfg = container_v1.NodeKubeletConfig(pool.config.kubelet_config)
    cfg.insecure_kubelet_readonly_port_enabled = False
    fleet.update_node_pool(
        container_v1.UpdateNodePoolRequest(name=f"{STD}/nodePools/busy", kubelet_config=cfg)
    )
    fleet.clock.advance(fleet.spec.timings.update_node_pool + 2 * fleet.spec.timings.per_node + 1)
    after = sorted(
        n.metadata.name for n in api.list_node(label_selector="cloud.google.com/gke-nodepool=busy").items
    )
    assert after and set(after).isdisjoint(before)
    with pytest.raises(ApiException) as err:
        metrics(fleet, STD, before[0])
    assert err.value.status == 404
    text = metrics(fleet, STD, after[0])
    assert readonly_lines(text) == []  # the port is closed on the new nodes; their counters start from zero
    assert family_value(text, "healthz", "readwrite") is None  # booted less than 10 s ago
    assert family_value(text, "metrics", "readwrite") == 1  # only our own read so far
    assert configz(api, after[0])["readOnlyPort"] == 0
    # DaemonSet pods follow the nodes
    ds_nodes = {
        p.spec.node_name for p in api.list_namespaced_pod("datadog", label_selector="app=datadog-agent").items
    }
    assert set(after) <= ds_nodes and ds_nodes.isdisjoint(before)


# ----- objects: agents, clean workloads, selectors -----------------------------------------------------------------


def _dump(obj) -> str:
    import json

    return json.dumps(client.ApiClient().sanitize_for_serialization(obj))


def test_agents_reference_the_readonly_port(shared):
    fleet, _ = shared
    api = core(fleet, STD)
    pods = api.list_pod_for_all_namespaces().items
    cms = api.list_config_map_for_all_namespaces().items
    node_names = {n.name for n in fleet.clusters[STD].all_nodes()}

    def pods_with(text: str) -> list:
        return [p for p in pods if text in _dump(p)]

    def cm_with(text: str) -> list:
        return [c for c in cms if text in _dump(c)]

    datadog = pods_with("DD_KUBERNETES_HTTP_KUBELET_PORT")
    assert len(datadog) == 5 and all(p.metadata.owner_references[0].kind == "DaemonSet" for p in datadog)
    env = {e.name: e.value for e in datadog[0].spec.containers[0].env}
    assert env["DD_KUBERNETES_HTTP_KUBELET_PORT"] == "10255"
    assert cm_with('url = \\"http://$HOSTIP:10255\\"') and cm_with("[[inputs.kubernetes]]")
    assert any("--kubelet-port=10255" in (c.args or []) for p in pods for c in p.spec.containers)
    assert pods_with("kubeletPort=10255&kubeletHttps=false")
    assert cm_with("Kubelet_Port        10255")
    prom = cm_with("replacement: '${1}:10255'")
    assert prom and "scheme: http" in prom[0].data["prometheus.yml"]
    sfx = cm_with("kubelet-stats")
    assert sfx and "authType: none" in sfx[0].data["agent.yaml"] and ":10255" in sfx[0].data["agent.yaml"]
    curl = pods_with("http://$(NODE_ADDRESS):10255/metrics")
    assert [p.metadata.name for p in curl] == ["kubelet-readonly-example"]
    assert curl[0].spec.node_name in nodes_of(fleet, STD, "busy")
    assert all(p.spec.node_name in node_names for p in pods)
    # clean workloads never mention the port
    for ns in ("shop", "observability"):
        assert "10255" not in _dump(api.list_namespaced_pod(ns))
        assert "10255" not in _dump(api.list_namespaced_config_map(ns))
    assert api.list_namespaced_pod("shop").items


def test_field_and_label_selectors(shared):
    fleet, _ = shared
    api = core(fleet, STD)
    node = nodes_of(fleet, STD, "old")[0]
    on_node = api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    assert on_node and all(p.spec.node_name == node for p in on_node)
    assert any(p.metadata.name == f"kube-proxy-{node}" for p in on_node)
    agents = api.list_namespaced_pod("datadog", label_selector="app=datadog-agent").items
    assert len(agents) == 5
    assert not api.list_namespaced_pod("datadog", label_selector="app=datadog-agent,app!=datadog-agent").items
    with pytest.raises(ApiException) as err:
        api.list_pod_for_all_namespaces(field_selector="spec.bogus=1")
    assert err.value.status == 400
    sa = api.list_namespaced_service_account("kube-system").items
    assert {"default", "metrics-server"} <= {s.metadata.name for s in sa}
    ds = client.AppsV1Api(api_client(fleet.clusters[STD])).list_daemon_set_for_all_namespaces().items
    assert {d.metadata.name for d in ds} >= {"datadog-agent", "telegraf", "fluent-bit", "signalfx-agent"}
    assert all(d.status.desired_number_scheduled == 5 for d in ds)


def test_autopilot_workloads_flag(shared):
    fleet, _ = shared

    def owners(path: str) -> list[tuple[str, str]]:
        return [
            (p.metadata.namespace, p.metadata.owner_references[0].kind if p.metadata.owner_references else "")
            for p in core(fleet, path).list_pod_for_all_namespaces().items
        ]

    auto = owners(AUTO)
    assert any(kind != "DaemonSet" and ns not in ("kube-system", "gmp-system") for ns, kind in auto)
    empty = owners(EMPTY)
    assert empty and all(kind == "DaemonSet" or ns in ("kube-system", "gmp-system") for ns, kind in empty)
    # its agents are still configured (their objects exist), they just run no pods
    deployments = (
        client.AppsV1Api(api_client(fleet.clusters[EMPTY])).list_deployment_for_all_namespaces().items
    )
    assert any(d.metadata.name == "metrics-server" and d.spec.replicas == 0 for d in deployments)


def test_create_errors(fresh):
    fleet, _ = fresh
    api = core(fleet, STD)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"), data={"a": "b"})
    api.create_namespaced_config_map("default", body)
    with pytest.raises(ApiException) as err:
        api.create_namespaced_config_map("default", body)
    assert err.value.status == 409 and 'configmaps \\"x\\" already exists' in err.value.body
    with pytest.raises(ApiException) as err:
        api.create_namespaced_config_map("nope", body)
    assert err.value.status == 404 and 'namespaces \\"nope\\" not found' in err.value.body
    bad = client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name="bad"),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels={"app": "a"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "b"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
            ),
        ),
    )
    with pytest.raises(ApiException) as err:
        client.AppsV1Api(api_client(fleet.clusters[STD])).create_namespaced_daemon_set("default", bad)
    assert err.value.status == 422
    with pytest.raises(ApiException) as err:
        api.delete_namespace("kube-system")
    assert err.value.status == 403
    api.delete_namespaced_config_map("x", "default")
    with pytest.raises(ApiException) as err:
        api.read_namespaced_config_map("x", "default")
    assert err.value.status == 404


# ----- the Autopilot probe -------------------------------------------------------------------------------------


def probe_objects() -> list:
    return [
        client.V1Namespace(metadata=client.V1ObjectMeta(name=PROBE_NS)),
        client.V1ClusterRole(
            metadata=client.V1ObjectMeta(name="node-metrics-printer-role"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["nodes/metrics"], verbs=["get"])],
        ),
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name="node-metrics-printer-binding"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="node-metrics-printer-role"
            ),
            subjects=[
                client.RbacV1Subject(
                    kind="ServiceAccount", name="node-metrics-printer-sa", namespace=PROBE_NS
                )
            ],
        ),
        client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="node-metrics-printer-sa", namespace=PROBE_NS)
        ),
        client.V1DaemonSet(
            metadata=client.V1ObjectMeta(name="node-metrics-printer", namespace=PROBE_NS),
            spec=client.V1DaemonSetSpec(
                selector=client.V1LabelSelector(match_labels={"app": "node-metrics-printer"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "node-metrics-printer"}),
                    spec=client.V1PodSpec(
                        service_account_name="node-metrics-printer-sa",
                        containers=[
                            client.V1Container(
                                name="metrics-printer",
                                image="us-docker.pkg.dev/cloud-builders/ga/v1/curl:latest",
                                command=["sh", "-c"],
                                args=[
                                    'while true; do curl -s --cacert "${CA_CERT}" -H "Authorization: Bearer '
                                    '$(cat ${TOKEN_FILE})" "https://${NODE_ADDRESS}:10250/metrics"|grep '
                                    "kubelet_http_requests_total; sleep 20; done"
                                ],
                                env=[
                                    client.V1EnvVar(
                                        name="NODE_ADDRESS",
                                        value_from=client.V1EnvVarSource(
                                            field_ref=client.V1ObjectFieldSelector(field_path="status.hostIP")
                                        ),
                                    )
                                ],
                            )
                        ],
                    ),
                ),
            ),
        ),
    ]


def create_probe(api: client.ApiClient) -> None:
    ns, role, binding, sa, ds = probe_objects()
    core_api, rbac, apps = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api), client.AppsV1Api(api)
    core_api.create_namespace(ns)
    rbac.create_cluster_role(role)
    rbac.create_cluster_role_binding(binding)
    core_api.create_namespaced_service_account(PROBE_NS, sa)
    apps.create_namespaced_daemon_set(PROBE_NS, ds)


def test_probe_daemonset_lifecycle(fresh):
    fleet, _ = fresh
    api = api_client(fleet.clusters[AUTO])
    core_api, rbac, apps = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api), client.AppsV1Api(api)
    fleet.clock.advance(100)
    create_probe(api)
    selector = "app=node-metrics-printer"
    pods = core_api.list_namespaced_pod(PROBE_NS, label_selector=selector).items
    node_names = sorted(n.name for n in fleet.clusters[AUTO].all_nodes())
    assert sorted(p.spec.node_name for p in pods) == node_names
    assert {p.status.phase for p in pods} == {"Pending"}
    with pytest.raises(ApiException) as err:
        core_api.read_namespaced_pod_log(pods[0].metadata.name, PROBE_NS)
    assert err.value.status == 400 and "waiting to start" in err.value.body

    fleet.clock.advance(fleet.spec.timings.probe_pod_start)
    pods = core_api.list_namespaced_pod(PROBE_NS, label_selector=selector).items
    assert {p.status.phase for p in pods} == {"Running"}
    ds = apps.read_namespaced_daemon_set("node-metrics-printer", PROBE_NS)
    assert ds.status.number_ready == ds.status.desired_number_scheduled == len(node_names)
    for pod in pods:
        ref = pod.metadata.owner_references[0]
        assert (ref.kind, ref.name, ref.uid) == ("DaemonSet", "node-metrics-printer", ds.metadata.uid)
        assert pod.metadata.labels["app"] == "node-metrics-printer"
        assert pod.status.host_ip and pod.status.pod_ip

    fleet.clock.advance(45)  # three rounds of the DaemonSet's loop: at start, +20 s, +40 s
    pod = pods[0]
    log = core_api.read_namespaced_pod_log(pod.metadata.name, PROBE_NS, container="metrics-printer")
    lines = log.splitlines()
    assert all(line.startswith("kubelet_http_requests_total{") for line in lines)
    readonly = [line for line in lines if 'server_type="readonly"' in line]
    assert len(readonly) == 9  # metrics, pods, stats in each of three rounds
    node = next(n for n in fleet.clusters[AUTO].all_nodes() if n.name == pod.spec.node_name)
    started = 100 + fleet.spec.timings.probe_pod_start
    assert readonly[-1].endswith(f" {node.readonly_counts(started + 40)['stats']}")
    assert readonly[0].endswith(f" {node.readonly_counts(started)['metrics']}")
    tail = core_api.read_namespaced_pod_log(pod.metadata.name, PROBE_NS, tail_lines=3, timestamps=True)
    assert len(tail.splitlines()) == 3 and tail.startswith("20")
    # More lines asked for than there are (kubectl logs --selector asks for 10): all of them, not the last one.
    more = core_api.read_namespaced_pod_log(pod.metadata.name, PROBE_NS, tail_lines=len(lines) + 5)
    assert more.splitlines() == lines

    # cleanup: the namespace goes Terminating, then takes its contents; the cluster-scoped RBAC goes separately
    core_api.delete_namespace(PROBE_NS)
    assert core_api.read_namespace(PROBE_NS).status.phase == "Terminating"
    rbac.delete_cluster_role("node-metrics-printer-role")
    rbac.delete_cluster_role_binding("node-metrics-printer-binding")
    fleet.clock.advance(10)
    with pytest.raises(ApiException):
        core_api.read_namespace(PROBE_NS)
    assert not core_api.list_namespaced_pod(PROBE_NS).items
    assert "node-metrics-printer-role" not in {r.metadata.name for r in rbac.list_cluster_role().items}
    assert "node-metrics-printer-binding" not in {
        b.metadata.name for b in rbac.list_cluster_role_binding().items
    }

    created = {e.target for e in fleet.journal if e.method == "k8s.create"}
    deleted = {e.target for e in fleet.journal if e.method == "k8s.delete"}
    assert created == {
        f"{AUTO}/Namespace//{PROBE_NS}",
        f"{AUTO}/ClusterRole//node-metrics-printer-role",
        f"{AUTO}/ClusterRoleBinding//node-metrics-printer-binding",
        f"{AUTO}/ServiceAccount/{PROBE_NS}/node-metrics-printer-sa",
        f"{AUTO}/DaemonSet/{PROBE_NS}/node-metrics-printer",
    }
    assert created <= deleted
    assert all(e.result == "created" for e in fleet.journal if e.method == "k8s.create")


def test_probe_pods_never_start(fresh):
    fleet, _ = fresh
    api = api_client(fleet.clusters[NEVER])
    create_probe(api)
    fleet.clock.advance(600)
    pods = client.CoreV1Api(api).list_namespaced_pod(PROBE_NS).items
    assert pods and {p.status.phase for p in pods} == {"Pending"}
    assert pods[0].status.container_statuses[0].state.waiting.reason == "ContainerCreating"


def test_watch_sees_probe_pods_start(fresh):
    fleet, server = fresh
    server.watch_poll_seconds = 0.02
    api = api_client(fleet.clusters[AUTO])
    create_probe(api)
    w = watch.Watch()
    seen: list[tuple[str, str]] = []
    timer = threading.Timer(0.3, fleet.clock.advance, args=(fleet.spec.timings.probe_pod_start,))
    timer.start()
    try:
        for event in w.stream(client.CoreV1Api(api).list_namespaced_pod, PROBE_NS, timeout_seconds=2):
            seen.append((event["type"], event["object"].status.phase))
            if sum(1 for t, phase in seen if t == "MODIFIED" and phase == "Running") == 2:
                w.stop()
    finally:
        timer.cancel()
    assert seen[:2] == [("ADDED", "Pending")] * 2
    assert ("MODIFIED", "Running") in seen


# ----- kubectl ---------------------------------------------------------------------------------------------------

KUBECTL = shutil.which("kubectl")

# The seed document's manifest, verbatim ("read-only-port-metrics.yaml").
SEED_MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: node-metrics-printer-namespace
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: node-metrics-printer-role
rules:
- apiGroups:
  - ""
  resources:
  - nodes/metrics
  verbs:
  - get
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: node-metrics-printer-binding
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: node-metrics-printer-role
subjects:
- kind: ServiceAccount
  name: node-metrics-printer-sa
  namespace: node-metrics-printer-namespace
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: node-metrics-printer-sa
  namespace: node-metrics-printer-namespace
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-metrics-printer
  namespace: node-metrics-printer-namespace
spec:
  selector:
    matchLabels:
      app: node-metrics-printer
  template:
    metadata:
      labels:
        app: node-metrics-printer
    spec:
      serviceAccountName: node-metrics-printer-sa
      containers:
      - name: metrics-printer
        image: us-docker.pkg.dev/cloud-builders/ga/v1/curl:latest
        command: ["sh", "-c"]
        args:
        - 'while true; do curl -s --cacert "${CA_CERT}" -H "Authorization: Bearer $(cat ${TOKEN_FILE})" "https://${NODE_ADDRESS}:10250/metrics"|grep kubelet_http_requests_total; sleep 20; done'
        env:
        - name: CA_CERT
          value: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
        - name: TOKEN_FILE
          value: /var/run/secrets/kubernetes.io/serviceaccount/token
        - name: NODE_ADDRESS
          valueFrom:
            fieldRef:
              fieldPath: status.hostIP
"""


def _manifest(tmp_path) -> str:
    path = tmp_path / "read-only-port-metrics.yaml"
    path.write_text(SEED_MANIFEST)
    return str(path)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")
def test_real_kubectl(tmp_path):
    fleet = make_fleet(Clock(0.01), small_spec())  # 1 simulated second = 10 ms: kubectl's waits end quickly
    with running(fleet) as server:
        kubeconfig = write_kubeconfig(fleet, tmp_path / "kubeconfig", "127.0.0.1", server.port, server.token)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}

        def kubectl(*args: str, context: str = STD) -> str:
            proc = subprocess.run(
                [KUBECTL, "--context", context, *args], env=env, capture_output=True, text=True, timeout=120
            )
            assert proc.returncode == 0, proc.stderr
            return proc.stdout

        out = kubectl("get", "nodes")
        assert out.splitlines()[0].split()[:2] == ["NAME", "STATUS"]
        assert {line.split()[0] for line in out.splitlines()[1:]} == {
            n.name for n in fleet.clusters[STD].all_nodes()
        }
        node = nodes_of(fleet, STD, "busy")[0]
        raw = kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/metrics")
        assert len(raw) >= 2_000_000 and len(readonly_lines(raw)) == 3
        assert "10255" in kubectl("get", "pods", "-A", "-o", "yaml")
        assert "Kubelet_Port" in kubectl("get", "configmaps", "-A", "-o", "yaml")

        manifest = _manifest(tmp_path)
        assert "daemonset.apps/node-metrics-printer created" in kubectl(
            "create", "-f", manifest, context=AUTO
        )
        deadline = time.monotonic() + 30
        logs = ""
        while time.monotonic() < deadline and 'server_type="readonly"' not in logs:
            time.sleep(0.2)
            proc = subprocess.run(
                [
                    KUBECTL,
                    "--context",
                    AUTO,
                    "logs",
                    f"--namespace={PROBE_NS}",
                    "--all-containers",
                    "--prefix",
                    "--selector=app=node-metrics-printer",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            logs = proc.stdout
        assert 'server_type="readonly"' in logs
        assert logs.startswith("[pod/node-metrics-printer-")
        out = kubectl("delete", "-f", manifest, context=AUTO)
        assert 'namespace "node-metrics-printer-namespace" deleted' in out
        assert 'clusterrolebinding.rbac.authorization.k8s.io "node-metrics-printer-binding" deleted' in out
        assert PROBE_NS not in kubectl("get", "namespaces", context=AUTO)
