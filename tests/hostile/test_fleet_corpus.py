"""Issue 8 §3, what the APIs answer: hostile and malformed data from GKE, the clusters and their kubelets.

One fleet holds a cluster per bad input (plus well-behaved controls); one real rollout runs over it with every
bad answer served at once, and each test checks one input: a clear reason in the report (an error or a safe
skip) and, judged from the simulator's journal, nothing changed on that cluster. The controls are changed as
usual, which shows the bad inputs did not stop the run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gkesim.kubelet import family_lines, gzip_member, readwrite_counts
from gkesim.kubestore import KubeStore
from gkesim.spec import FleetSpec
from tests.chaos.harness import MUTATIONS, portcullis_config, probe_objects

P = "hostile-0001"
ODD_PROJECT = "Bad_Proj"
LOC = "us-central1"
ODD_NAMES = ["UPPER", "sp ace", "sl/ash", "semi;colon", "ünï", "dot.dot"]
BAD_VERSIONS = {
    "ver-latest": "latest",
    "ver-empty": "",
    "ver-fullwidth": "１.３０.5-gke.1",
    "ver-huge": "9" * 30 + ".1.1",
}


def _std(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "location": LOC, "pools": kw.pop("pools", [{"name": "a", "nodes": 1}]), **kw}


FLEET = {
    "organization": "333333333333",
    "timings": {"update_cluster": 20, "update_node_pool": 20, "per_node": 10},
    "projects": [
        {
            "id": P,
            "clusters": [
                _std("good-0"),
                _std("good-1", pools=[{"name": "a", "nodes": 1}, {"name": "b", "nodes": 1, "version": "v1.x.3"}]),
                {"name": "ap-good", "location": LOC, "mode": "autopilot"},
                *[_std(name, version=v) for name, v in BAD_VERSIONS.items()],
                _std("no-pools"),
                _std("no-endpoint"),
                _std("no-ca"),
                {"name": "ap-no-endpoint", "location": LOC, "mode": "autopilot"},
                _std("wrong-ca"),
                _std("trunc-text"),
                _std("trunc-conn"),
                _std("huge"),
                _std("huge-after"),
                _std("gzip-corrupt"),
                _std("gzip-bomb"),
                _std("notprom-html"),
                _std("notprom-binary"),
                _std("escapes-ro"),
                _std("escapes-rw"),
                {"name": "ap-garbage", "location": LOC, "mode": "autopilot"},
                {"name": "ap-garbage-used", "location": LOC, "mode": "autopilot",
                 "pools": [{"name": "default-pool", "usage": "used_before"}]},
                *[_std(name) for name in ODD_NAMES],
            ],
        },
        {"id": ODD_PROJECT, "clusters": [_std("inside-odd-project")]},
    ],
    "faults": {"wrong_ca": [f"projects/{P}/locations/{LOC}/clusters/wrong-ca"]},
}  # fmt: skip
HUGE = 100 * 1024 * 1024


def path(name: str, project: str = P) -> str:
    return f"projects/{project}/locations/{LOC}/clusters/{name}"


# ----- what the bad kubelets and probe pods send -----------------------------------------------------------------


class _CutAfterFirst(list):
    """Parts whose Content-Length is the whole, but the connection drops after the first part."""

    def __init__(self, parts: list[bytes]) -> None:
        super().__init__(parts)
        self._iterations = 0

    def __iter__(self) -> Iterator[bytes]:
        self._iterations += 1
        if self._iterations == 1:  # the server sums the lengths first
            return super().__iter__()
        return self._cut()

    def _cut(self) -> Iterator[bytes]:
        yield self[0]
        raise ConnectionResetError("kubelet went away")


FILLER = b"".join(
    b'container_cpu_usage_seconds_total{container="app",namespace="ns-%d",pod="pod-%d"} 1234.5\n' % (i, i)
    for i in range(12000)
)  # ~1 MB of other families, sent again and again for the 100 MB payload
ESCAPED_READONLY = (
    "# HELP kubelet_http_requests_total [ALPHA] Number of HTTP requests received since the server started.\n"
    "# TYPE kubelet_http_requests_total counter\n"
    'kubelet_http_requests_total{long_running="false",method="GET",path="metrics",server_type="readwrite"} 3\n'
    'kubelet_http_requests_total{long_running="false",method="GET",path="stats\\\\summary\\n\\"x\\"",'
    'server_type="readonly"} 7\n'
)
ESCAPED_READWRITE = (
    "# HELP kubelet_http_requests_total [ALPHA] Number of HTTP requests received since the server started.\n"
    "# TYPE kubelet_http_requests_total counter\n"
    'kubelet_http_requests_total{long_running="false",method="GET",path="metrics",server_type="readwrite"} 3\n'
    # "readonly" only inside an escaped label value: a regex reader would see a read-only series, there is none
    'kubelet_http_requests_total{long_running="false",method="GET",'
    'path="x\\",server_type=\\"readonly",server_type="readwrite"} 9\n'
)


def _plain(part: bytes) -> bytes:
    return part


def _gzip(part: bytes) -> bytes:
    return gzip_member(part, 1)


@functools.cache
def _gzip_bomb() -> bytes:
    return gzip_member(b"x" * (64 * 1024 * 1024), 9)


def hostile_parts(
    real: list[bytes], node: str, encode: Callable[[bytes], bytes] = _plain
) -> list[bytes] | None:
    """What a bad kubelet sends instead of `real`, each part encoded (plain, or as a gzip member)."""
    whole = b"".join(bytes(p) for p in real)
    family = whole.find(b"kubelet_http_requests_total{")
    if "-trunc-text-" in node:
        return [encode(whole[: family + 40])]  # ends mid-line, inside the family
    if "-trunc-conn-" in node:  # dropped before the family's block ends
        return _CutAfterFirst([encode(whole[: family + 40]), encode(whole[family + 40 :])])
    if "-huge-after-" in node:  # the family first: the read stops after it, the 100 MB are never read
        return [encode(whole)] + [encode(FILLER)] * (HUGE // len(FILLER) + 1)
    if "-huge-" in node:  # 100 MB of families that sort before it (a kubelet with very many containers)
        return [encode(FILLER)] * (HUGE // len(FILLER) + 1) + [encode(whole)]
    if "-notprom-html-" in node:
        return [encode(b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n")]
    if "-notprom-binary-" in node:
        return [encode(bytes(range(256)) * 64 + b"\x00kubelet_http_requests_total\xff\xfe\n")]
    if "-escapes-ro-" in node:
        return [encode(FILLER[:5000]), encode(ESCAPED_READONLY.encode())]
    if "-escapes-rw-" in node:
        return [encode(FILLER[:5000]), encode(ESCAPED_READWRITE.encode())]
    if encode is _gzip and "-gzip-corrupt-" in node:  # says gzip, is not
        return [b"\x1f\x8b\x08\x00" + whole[:5000]]
    if encode is _gzip and "-gzip-bomb-" in node:  # 65 KB on the wire, 64 MB of one line inflated
        return [_gzip_bomb()]
    return None


class HostilePayload:
    def __init__(self, real: Any) -> None:
        self.real = real

    def parts(self, node: str, readwrite: dict[str, int], readonly: dict[str, int]) -> list[bytes]:
        parts = self.real.parts(node, readwrite, readonly)
        return hostile_parts(parts, node) or parts

    def gzip_parts(self, node: str, readwrite: dict[str, int], readonly: dict[str, int]) -> list[bytes]:
        bad = hostile_parts(self.real.parts(node, readwrite, readonly), node, _gzip)
        return bad or self.real.gzip_parts(node, readwrite, readonly)


GARBAGE = [
    "\x00\x01\x02 binary \xff\xfe junk",
    'kubelet_http_requests_total{path="metrics",server_type="readonly"',  # cut: no value
    'kubelet_http_requests_total{path="metrics",server_type="readonly"} NaN',
    'kubelet_http_requests_total{server_type="readonly"} 5',  # no path label
    "[pod/someone-else/metrics-printer] curl: (7) Failed to connect",
    "# HELP something_else whatever",
    "x" * 100_000,
    '{"level":"error","msg":"not a metric"}',
]


@pytest.fixture(scope="module")
def outcome(prefect_api, tmp_path_factory) -> Iterator[dict[str, Any]]:
    from flows.rollout import rollout_flow
    from gkesim.server import Simulator

    sim = Simulator.from_spec(FleetSpec.model_validate(FLEET), time_scale=0.002)
    sim.start()
    mp = pytest.MonkeyPatch()
    try:
        sim.kube._payload = HostilePayload(sim.kube.payload)  # the payload is built lazily; replace it
        with sim.fleet.lock:
            clusters = sim.fleet.clusters
            nopools = clusters[path("no-pools")]
            del nopools.msg.node_pools[:]
            nopools.nodes.clear()
            clusters[path("no-endpoint")].msg.endpoint = ""
            clusters[path("ap-no-endpoint")].msg.endpoint = ""
            clusters[path("no-ca")].msg.master_auth.cluster_ca_certificate = ""
        real_lines = KubeStore._probe_lines

        def probe_lines(
            self: KubeStore, node: Any, started: float, now: float, tail: Any, since: Any
        ) -> list:
            lines = real_lines(self, node, started, now, tail, since)
            name = self.cluster.msg.name
            if name == "ap-garbage":  # nothing but garbage: the probe printed no reading
                return [(t, g) for t, _ in lines[:1] for g in GARBAGE]
            if name == "ap-garbage-used":  # garbage between real rounds that show read-only use
                return [(t, g) for t, line in lines for g in (line, *GARBAGE[:4])]
            return lines

        mp.setattr(KubeStore, "_probe_lines", probe_lines)
        tmp = tmp_path_factory.mktemp("hostile")
        cfg = portcullis_config(
            sim,
            tmp / "c.yaml",
            scan={"max_metrics_bytes": 16 * 1024 * 1024, "request_timeout_seconds": 10},
            rollout={"waves": [{"name": "all", "select": {"all": True}, "concurrency": 8}]},
        )
        report = rollout_flow(str(cfg), auto_approve=True)
        rows = {c["cluster"]: c for c in report["clusters"]}
        changed: dict[str, list[str]] = {}
        for e in sim.fleet.journal:
            if e.method in MUTATIONS and e.result.startswith("accepted"):
                changed.setdefault(e.target.split("/nodePools/")[0], []).append(e.target)
        k8s_writes = [e for e in sim.fleet.journal if e.method.startswith("k8s.")]
        yield {"sim": sim, "report": report, "rows": rows, "changed": changed, "k8s": k8s_writes}
    finally:
        mp.undo()
        sim.stop()


def _untouched(outcome: dict[str, Any], cluster: str, outcome_is: str, *words: str) -> dict[str, Any]:
    row = outcome["rows"][cluster]
    assert cluster not in outcome["changed"], f"{cluster} was changed: {outcome['changed'][cluster]}"
    assert row["outcome"] == outcome_is, row
    text = (row.get("reason") or "") + " " + " ".join((row.get("scan") or {}).get("reasons") or [])
    for word in words:
        assert word in text, (word, row)
    return row


def test_controls_are_changed_so_the_bad_inputs_did_not_stop_the_run(outcome) -> None:
    rows = outcome["rows"]
    assert rows[path("good-0")]["outcome"] == "verified"
    assert rows[path("ap-good")]["outcome"] == "verified"
    assert rows[path("escapes-rw")]["outcome"] == "verified"
    assert len(rows) == len(outcome["sim"].fleet.clusters), (
        "every cluster, even the odd ones, is reported once"
    )
    inv = outcome["sim"].fleet.invariant_report()
    assert (inv["conflicts"], inv["breakage"], inv["duplicates"], inv["lost_settings"]) == ([], [], [], [])
    assert probe_objects(outcome["sim"].fleet) == []


@pytest.mark.parametrize("name", sorted(BAD_VERSIONS))
def test_gke_version_that_does_not_parse_is_not_eligible(outcome, name) -> None:
    _untouched(outcome, path(name), "not_eligible", "could not be read")


def test_node_pool_version_that_does_not_parse_is_left_alone(outcome) -> None:
    row = outcome["rows"][path("good-1")]
    assert row["outcome"] == "partial", row
    assert all("nodePools/b" not in t for t in outcome["changed"][path("good-1")])
    assert "node_pool/b: left alone" in row["reason"], row["reason"]


def test_cluster_without_node_pools_is_not_scanned_clear(outcome) -> None:
    _untouched(outcome, path("no-pools"), "blocked", "inconclusive", "no node could be sampled")


@pytest.mark.parametrize("name", ["no-endpoint", "ap-no-endpoint"])
def test_cluster_without_endpoint_is_blocked(outcome, name) -> None:
    _untouched(outcome, path(name), "blocked", "no endpoint")


def test_cluster_without_ca_is_blocked(outcome) -> None:
    _untouched(outcome, path("no-ca"), "blocked", "no CA certificate")


def test_ca_that_does_not_match_the_server_is_inconclusive(outcome) -> None:
    _untouched(outcome, path("wrong-ca"), "blocked", "inconclusive", "TLS verification failed")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("trunc-text", "cut off mid-line"),
        ("trunc-conn", "/metrics"),
        ("huge", "larger than the limit"),
        ("gzip-corrupt", "does not decompress"),
        ("gzip-bomb", "larger than the limit"),
        ("notprom-html", "no kubelet_http_requests_total family"),
        ("notprom-binary", "inconclusive"),
    ],
)
def test_bad_metrics_payload_is_inconclusive(outcome, name, why) -> None:
    _untouched(outcome, path(name), "blocked", "inconclusive", why)


def test_huge_payload_is_not_read_past_the_limit(outcome) -> None:
    reasons = " ".join(outcome["rows"][path("huge")]["scan"]["reasons"])
    stopped = int(reasons.split("stopped after ")[1].split(" bytes")[0])
    assert 16 * 1024 * 1024 < stopped < 17 * 1024 * 1024 < HUGE


def test_huge_payload_after_the_family_is_not_read(outcome) -> None:
    """Families are written whole and in order, so the reading is complete once the family's block has ended."""
    row = outcome["rows"][path("huge-after")]
    assert row["outcome"] == "verified" and row["scan"]["verdict"] == "clear", row


def test_label_escapes_hide_no_read_only_series(outcome) -> None:
    row = _untouched(outcome, path("escapes-ro"), "blocked", "used_before")
    paths = {e["path"] for e in row["scan"]["evidence"]}
    assert paths == {'stats\\summary\n"x"'}, paths  # unescaped exactly as Prometheus defines it


def test_label_escapes_invent_no_read_only_series(outcome) -> None:
    row = outcome["rows"][path("escapes-rw")]
    assert row["scan"]["verdict"] == "clear" and row["scan"]["evidence"] == []


def test_probe_logs_of_garbage_are_inconclusive(outcome) -> None:
    _untouched(
        outcome, path("ap-garbage"), "blocked", "inconclusive", "no kubelet_http_requests_total family"
    )


def test_garbage_between_probe_log_lines_hides_no_use(outcome) -> None:
    row = _untouched(outcome, path("ap-garbage-used"), "blocked")
    assert row["scan"]["verdict"] in ("used_before", "in_use"), row["scan"]
    assert {e["count"] for e in row["scan"]["evidence"]} == {120.0}, (
        "the real series, none of the garbage ones"
    )


@pytest.mark.parametrize("name", ODD_NAMES)
def test_cluster_name_with_unexpected_characters_is_skipped(outcome, name) -> None:
    _untouched(outcome, path(name), "skipped", "characters GKE names never have")
    assert not [e for e in outcome["k8s"] if f"/clusters/{name}/" in e.target], "not even scanned"


def test_project_id_with_unexpected_characters_is_skipped(outcome) -> None:
    _untouched(outcome, path("inside-odd-project", ODD_PROJECT), "skipped", "characters GKE names never have")


def test_reads_are_unaffected_by_the_hostile_data() -> None:
    """The helpers above send what they say (a guard against a silently broken corpus)."""
    real = [b"a\n", b'kubelet_http_requests_total{path="metrics",server_type="readwrite"} 1\n']
    assert hostile_parts(real, "gke-good-0-a-1") is None
    assert not b"".join(hostile_parts(real, "gke-trunc-text-a-1")).endswith(b"\n")
    lines = family_lines(readwrite_counts(60.0, 1), {"metrics": 3})
    assert any('server_type="readonly"' in line for line in lines)
