"""Issue 8 §3, what the operator writes: hostile and malformed configuration, and waves that make no sense.

Each bad file goes through the real command line (`portcullis inventory|scan|rollout --config F`) pointed at a
running simulator: the exit status is 2, stderr names the problem and where it is, and the simulator saw not
one call (so nothing can have changed). Waves that select nothing or overlap are not errors: a wave that selects
nothing takes no cluster (and says so), overlapping waves give each cluster to the first, and a run whose waves
select nothing changes nothing and reports every cluster as skipped with the reason.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cli import EXIT_USAGE, main
from tests.chaos.harness import MUTATIONS, count_calls

P, Q = "hostile-cfg-0001", "hostile-cfg-0002"
FLEET = {
    "organization": "222222222222",
    "projects": [
        {"id": P, "labels": {"env": "dev"}, "clusters": [{"name": f"d{i}"} for i in range(3)]},
        {"id": Q, "labels": {"env": "prod"}, "clusters": [{"name": f"p{i}"} for i in range(2)]},
    ],
}
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def _good(sim: Any) -> dict[str, Any]:
    from flows.simcmd import sim_config

    return sim_config(sim.endpoints, sim.fleet.spec, window_seconds=0.3)


def _with(data: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    return {**data, section: {**data.get(section, {}), **values}}


# (id, text or a function of the good config returning data, the words stderr must contain)
CORPUS: list[tuple[str, Any, list[str]]] = [
    ("unclosed-bracket", "scope: {organization: '1'\napi: [", ["not valid YAML", "line"]),
    ("tab-indent", "scope:\n\torganization: '1'\n", ["not valid YAML", "line 2"]),
    ("not-utf8", b"scope:\n  organization: '\xff\xfe'\n", ["not UTF-8 text"]),
    ("empty-file", "", ["top level must be a mapping"]),
    ("top-level-list", "- scope\n- api\n", ["top level must be a mapping"]),
    ("yaml-bomb", BOMB + "scope: {organization: '1'}\n", ["unknown key"]),
    ("scope-null", lambda g: {**g, "scope": None}, ["scope"]),
    (
        "wrong-type-bool-int",
        lambda g: _with(g, "limits", concurrency=True),
        ["limits.concurrency", "integer"],
    ),
    ("wrong-type-str-number", lambda g: _with(g, "scan", window_seconds="60"), ["scan.window_seconds"]),
    ("wrong-type-list", lambda g: _with(g, "scope", projects=P), ["scope.projects", "list"]),
    ("wrong-type-waves", lambda g: _with(g, "rollout", waves={"name": "x"}), ["rollout.waves"]),
    (
        "infinite-window",
        lambda g: _with(g, "scan", window_seconds=float("inf")),
        ["scan.window_seconds", "finite"],
    ),
    ("nan-timeout", lambda g: _with(g, "limits", call_timeout_seconds=float("nan")), ["limits.call_timeout"]),
    ("negative", lambda g: _with(g, "limits", concurrency=-1), ["limits.concurrency"]),
    ("unknown-key", lambda g: _with(g, "scan", windw_seconds=5), ["scan.windw_seconds: unknown key"]),
    ("unknown-section", lambda g: {**g, "rollouts": {}}, ["rollouts: unknown key"]),
    ("misspelt-safety-key", lambda g: _with(g, "gate", allow_used_befor=True), ["gate.allow_used_befor"]),
    (
        "plaintext-to-remote-host",
        lambda g: _with(g, "api", container_endpoint="10.1.2.3:443"),
        ["plaintext is allowed only for loopback", "10.1.2.3:443"],
    ),
    (
        "plaintext-to-lookalike-host",
        lambda g: _with(g, "api", resourcemanager_endpoint="127.0.0.1.nip.io:80"),
        ["plaintext is allowed only for loopback"],
    ),
    (
        "endpoint-with-scheme",
        lambda g: _with(g, "api", container_endpoint="http://127.0.0.1:1"),
        ["HOST:PORT"],
    ),
    (
        "duplicate-wave-names",
        lambda g: _with(g, "rollout", waves=[{"name": "w", "select": {"all": True}}] * 2),
        ["wave names must be unique"],
    ),
    (
        "override-without-reason",
        lambda g: _with(
            g, "gate", overrides=[{"cluster": f"projects/{P}/locations/us-central1/clusters/d0"}]
        ),
        ["gate.overrides[0].reason"],
    ),
]


@pytest.fixture(scope="module")
def sim() -> Any:
    from gkesim.server import Simulator
    from gkesim.spec import FleetSpec

    s = Simulator.from_spec(FleetSpec.model_validate(FLEET), time_scale=0.002)
    s.start()
    yield s
    s.stop()


@pytest.mark.parametrize("command", ["inventory", "rollout"])
@pytest.mark.parametrize(("case", "content", "words"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_config_is_refused_before_any_call(sim, tmp_path, capsys, command, case, content, words) -> None:
    path = tmp_path / "bad.yaml"
    if callable(content):
        path.write_text(yaml.safe_dump(content(_good(sim)), sort_keys=False), encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    calls = count_calls(sim.fleet)
    journal = len(sim.fleet.journal)
    started = time.monotonic()
    args = [command, "--config", str(path)] + (["--yes"] if command == "rollout" else [])
    code = main(args)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    for word in words:
        assert word in err, (word, err)
    assert sum(calls.values()) == 0 and len(sim.fleet.journal) == journal, "nothing was called"
    assert time.monotonic() - started < 10, "refused at once (no YAML bomb expansion, no retries)"


def test_good_config_does_call(sim, tmp_path, capsys) -> None:
    """The other side of the test above: the same harness sees calls when the config is valid."""
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(_good(sim)), encoding="utf-8")
    calls = count_calls(sim.fleet)
    from config.schema import load_config
    from tests.integration.helpers import inventory

    load_config(path)
    assert len(inventory(path).records) == 5
    assert calls["ListClusters"] >= 2


def test_bad_cluster_filter_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rollout", "--config", "x.yaml", "--cluster", "projects/p/locations/l/clusters/../../etc"])
    assert exc.value.code == EXIT_USAGE
    assert "--cluster must look like" in capsys.readouterr().err


def _records(sim: Any, tmp_path: Path, waves: list[dict[str, Any]]):
    from config.schema import load_config
    from tasks.change.waves import assign_waves
    from tests.integration.helpers import inventory

    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(_with(_good(sim), "rollout", waves=waves)), encoding="utf-8")
    inv = inventory(path)
    return path, inv, assign_waves(inv.records, load_config(path).rollout)


def test_overlapping_waves_give_each_cluster_to_the_first(sim, tmp_path) -> None:
    waves = [
        {"name": "dev", "select": {"projects": [P]}},
        {"name": "dev-again", "select": {"project_labels": {"env": "dev"}}},  # overlaps "dev" entirely
        {"name": "everything", "select": {"all": True}},  # overlaps both
    ]
    _, inv, (plans, unassigned) = _records(sim, tmp_path, waves)
    taken = Counter(r.path for plan in plans for r in plan.clusters)
    assert set(taken.values()) == {1} and len(taken) == len(inv.records) and not unassigned
    assert [len(p.clusters) for p in plans] == [3, 0, 2]


def test_waves_that_select_nothing_change_nothing(sim, tmp_path, prefect_api) -> None:
    from flows.rollout import rollout_flow

    waves = [
        {"name": "typo", "select": {"names": ["no-such-cluster-*"]}},
        {"name": "empty-selector", "select": {}},  # no criterion and not `all`: selects none
        {"name": "unknown-project", "select": {"projects": ["nobody-0000"]}},
    ]
    path, _, (plans, unassigned) = _records(sim, tmp_path, waves)
    assert [len(p.clusters) for p in plans] == [0, 0, 0] and len(unassigned) == 5
    before = len(sim.fleet.journal)
    report = rollout_flow(str(path), auto_approve=True)
    assert not [e for e in sim.fleet.journal[before:] if e.method in MUTATIONS or e.method.startswith("k8s.")]
    assert {c["outcome"] for c in report["clusters"]} == {"skipped"}
    assert {c["reason"] for c in report["clusters"]} == {"no wave selects it"}
    assert [w["clusters"] for w in report["waves"]] == [0, 0, 0] and report["ok"] is False
