"""prefect.yaml, the deployment entry flows' parameter schemas, the limit helpers and the scale settings file.

No server here: what these check is read from the files and the flows' signatures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import yaml

from config.schema import parse_config
from tasks.access import limits
from tasks.access.retry import Caller
from tasks.change.apply import OperationSlots
from tests.deploy.stack import REPO

OK = {"scope": {"organization": "123456789012"}}


def deployments() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in data["deployments"]}


def schema(entrypoint: str) -> dict[str, Any]:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(load_flow_from_entrypoint(str(REPO / entrypoint))).model_dump()


def test_the_four_deployments_and_their_schedules() -> None:
    deps = deployments()
    assert set(deps) == {"org-rollout", "rollout-wave", "verify-fleet", "scan-fleet"}
    for d in deps.values():
        assert d["work_pool"]["name"] == "portcullis"
        assert d["enforce_parameter_schema"] is True
        assert d["parameters"]["config_path"] == "{{ $PORTCULLIS_CONFIG }}"
    [org] = deps["org-rollout"]["schedules"]
    assert org["cron"] and org["timezone"] and org["active"] is False  # off until an operator turns it on
    assert deps["org-rollout"]["concurrency_limit"]["limit"] == 1
    [nightly] = deps["verify-fleet"]["schedules"]
    assert nightly["cron"].split()[2:] == ["*", "*", "*"] and nightly["timezone"]
    assert "schedules" not in deps["rollout-wave"] and "schedules" not in deps["scan-fleet"]


def test_rollout_wave_parameters_are_typed_for_the_form_and_the_server() -> None:
    s = schema(deployments()["rollout-wave"]["entrypoint"])
    props = s["properties"]
    assert s["required"] == ["config_path", "wave"]
    assert props["wave"]["pattern"] == r"^[a-z0-9][a-z0-9_-]{0,62}$"
    assert props["clusters"]["type"] == "array" and props["clusters"]["items"]["pattern"].startswith(
        "^projects/"
    )
    assert props["dry_run"] == {**props["dry_run"], "type": "boolean", "default": True}
    assert props["auto_approve"] == {**props["auto_approve"], "type": "boolean", "default": False}
    assert all(p.get("description") for p in props.values())  # the form explains every field


def test_every_entrypoint_loads_with_a_config_path_parameter() -> None:
    for d in deployments().values():
        assert "config_path" in schema(d["entrypoint"])["required"]


def test_bad_wave_parameters_are_refused_before_anything_runs() -> None:
    from flows.deployments import rollout_wave

    with pytest.raises(Exception, match="wave"):
        rollout_wave.validate_parameters({"config_path": "x.yaml", "wave": "Not A Wave!"})
    with pytest.raises(Exception, match="clusters"):
        rollout_wave.validate_parameters({"config_path": "x.yaml", "wave": "canary", "clusters": ["prod-1"]})
    ok = rollout_wave.validate_parameters({"config_path": "x.yaml", "wave": "canary"})
    assert ok["dry_run"] is True and ok["clusters"] == []


def test_wanted_limits_come_from_the_config() -> None:
    assert limits.wanted_limits(parse_config(OK)) == []
    cfg = parse_config(
        {
            **OK,
            "limits": {"prefect_rate_limit": "gke-api", "prefect_calls_per_second": 2.5},
            "rollout": {"prefect_mutation_limit": "gke-mutations", "prefect_mutations_in_flight": 7},
        }
    )
    assert limits.wanted_limits(cfg) == [
        limits.LimitSpec("gke-mutations", 7, 0.0, "rollout.prefect_mutation_limit"),
        limits.LimitSpec("gke-api", 3, 2.5, "limits.prefect_rate_limit"),
    ]


class FakeClient:
    """Stands in for Prefect's sync client at the boundary: the three lease calls mutation_slot makes."""

    def __init__(self, known: bool = True, busy: int = 0) -> None:
        self.known, self.busy = known, busy  # busy: answer 423 Locked this many times first
        self.calls: list[str] = []

    def increment_concurrency_slots_with_lease(self, names: list[str], **_: object) -> httpx.Response:
        request = httpx.Request("POST", "http://prefect/api/v2/concurrency_limits/increment-with-lease")
        if self.busy:
            self.busy -= 1
            self.calls.append("locked")
            response = httpx.Response(423, headers={"Retry-After": "30"}, request=request)
            raise httpx.HTTPStatusError("locked", request=request, response=response)
        self.calls.append(f"acquire {names[0]}")
        limits = [{"name": names[0], "limit": 1}] if self.known else []
        return httpx.Response(200, json={"lease_id": str(uuid4()), "limits": limits}, request=request)

    def renew_concurrency_lease(self, **_: object) -> None:
        self.calls.append("renew")

    def release_concurrency_slots_with_lease(self, lease_id: object) -> None:
        self.calls.append("release")


def refuse(*_: object, **__: object) -> None:
    raise AssertionError("the Prefect server was asked although no limit is configured")


def test_unset_limits_cost_no_server_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.client.orchestration as prefect_client
    import prefect.concurrency.sync as prefect_limits

    monkeypatch.setattr(prefect_client, "get_client", refuse)
    monkeypatch.setattr(limits, "_client", refuse)
    monkeypatch.setattr(prefect_limits, "rate_limit", refuse)
    cfg = parse_config(OK)
    with OperationSlots(cfg.rollout).slot("proj-123456", "us-central1-a"):
        pass
    calls = []
    caller = Caller(cfg.limits)
    assert caller.call(lambda **kw: calls.append(kw) or "ok") == "ok"
    assert caller.once(lambda **kw: "once") == "once"
    assert len(calls) == 1


def test_configured_limits_are_taken_around_mutations_and_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.concurrency.sync as prefect_limits

    fake = FakeClient(busy=2)
    monkeypatch.setattr(limits, "_client", lambda: fake)
    monkeypatch.setattr(prefect_limits, "rate_limit", lambda name, **kw: fake.calls.append(f"call {name}"))
    monkeypatch.setattr(limits, "POLL_MIN_SECONDS", 0.001)
    cfg = parse_config(
        {**OK, "limits": {"prefect_rate_limit": "api"}, "rollout": {"prefect_mutation_limit": "muts"}}
    )
    with OperationSlots(cfg.rollout).slot("proj-123456", "europe-west1"):
        assert fake.calls == ["locked", "locked", "acquire muts"]  # a busy limit is asked again, not skipped
    assert fake.calls[-1] == "release"
    Caller(cfg.limits).call(lambda **kw: None)
    assert fake.calls[-1] == "call api"


def test_a_configured_limit_the_server_lacks_is_an_error_not_no_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import prefect.concurrency.sync as prefect_limits

    def missing(name: str, **_: object) -> None:
        raise RuntimeError(f"Concurrency limits [{name!r}] must be created before acquiring slots")

    monkeypatch.setattr(limits, "_client", lambda: FakeClient(known=False))
    monkeypatch.setattr(prefect_limits, "rate_limit", missing)
    with (
        pytest.raises(
            limits.LimitMissing, match=r"rollout\.prefect_mutation_limit.*python -m tasks.access.limits"
        ),
        limits.mutation_slot("muts"),
    ):
        pass
    with pytest.raises(limits.LimitMissing, match=r"limits\.prefect_rate_limit"):
        limits.take_call_slot("api")


def test_example_config_documents_the_limit_keys() -> None:
    text = (REPO / "config" / "example.yaml").read_text()
    for key in (
        "prefect_rate_limit",
        "prefect_calls_per_second",
        "prefect_mutation_limit",
        "prefect_mutations_in_flight",
    ):
        assert f"  {key}:" in text


def test_scale_server_settings_are_all_known_to_prefect() -> None:
    """A misspelt setting would be ignored silently and the server would drop events again."""
    from prefect.settings import Settings
    from prefect.settings.legacy import _get_settings_fields

    known = set(_get_settings_fields(Settings))
    redis_fields = {"HOST", "PORT", "DB", "URL", "USERNAME", "PASSWORD", "SSL"}
    keys = [
        line.split("=", 1)[0]
        for line in (REPO / "ops" / "scale-server.env").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert "PREFECT_API_DATABASE_CONNECTION_URL" in keys and "PREFECT_MESSAGING_BROKER" in keys
    from prefect_redis.messaging import RedisMessagingConsumerSettings, RedisMessagingPublisherSettings

    sections = {  # prefect-redis's own settings classes, by environment prefix
        "PREFECT_REDIS_MESSAGING_CONSUMER_": RedisMessagingConsumerSettings,
        "PREFECT_REDIS_MESSAGING_PUBLISHER_": RedisMessagingPublisherSettings,
    }
    for key in keys:
        prefix = next((p for p in sections if key.startswith(p)), None)
        if prefix:
            assert key.removeprefix(prefix).lower() in sections[prefix].model_fields, key
        elif key.startswith("PREFECT_REDIS_MESSAGING_"):
            assert key.removeprefix("PREFECT_REDIS_MESSAGING_") in redis_fields, key
        else:
            assert key in known, f"{key} is not a Prefect setting"


def test_ops_scripts_are_valid_bash() -> None:
    import subprocess

    for script in ("deploy.sh", "stop.sh"):
        subprocess.run(["bash", "-n", str(REPO / "ops" / script)], check=True)
    assert Path(REPO / "ops" / "deploy.sh").read_text().count("setsid") >= 1
