"""Against the server `make deploy` starts: bad parameters refused, a scheduled-kind run through the worker, and
the shared limits as the Prefect server enforces them."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.schema import parse_config
from tasks.access import limits
from tests.deploy.stack import Deployed

pytestmark = pytest.mark.slow


@pytest.fixture
def api_settings(local_deploy: Deployed) -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: local_deploy.api}):
        yield


def test_the_server_refuses_bad_parameters(local_deploy: Deployed) -> None:
    dep = local_deploy.deployment("rollout-wave")
    for params, field in (
        ({"wave": "Not A Wave!"}, "wave"),
        ({"wave": "canary", "clusters": ["my-cluster"]}, "clusters[0]"),
        ({"wave": "canary", "dry_run": "maybe"}, "dry_run"),
    ):
        r = local_deploy.post(f"/deployments/{dep['id']}/create_flow_run", {"parameters": params})
        assert r.status_code == 409, r.text
        assert f"Validation failed for field '{field}'" in r.json()["detail"]


def test_verify_fleet_runs_on_the_worker_and_publishes_artifacts(
    local_deploy: Deployed, tmp_path: Path
) -> None:
    run = local_deploy.run("verify-fleet", {"report_dir": str(tmp_path)})
    run = local_deploy.wait_state(run["id"], {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, timeout=180)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    arts = local_deploy.post(
        "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    ).json()
    assert {"verify-clusters", "verify-summary", "inventory-clusters"} <= {a["key"] for a in arts}
    assert list(tmp_path.glob("verify-*.json"))


def test_the_mutation_limit_holds_across_threads(api_settings: None) -> None:
    cfg = parse_config(
        {
            "scope": {"organization": "1"},
            "rollout": {"prefect_mutation_limit": "test-mutations", "prefect_mutations_in_flight": 2},
        }
    )
    assert [s.name for s in limits.ensure_limits(cfg)] == ["test-mutations"]
    now, peak, lock = [0], [0], threading.Lock()

    def mutate() -> None:
        with limits.mutation_slot("test-mutations"):
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(0.3)
            with lock:
                now[0] -= 1

    # Each thread carries this context, where the API URL is set (as Prefect's task threads do).
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(mutate,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert peak[0] == 2


def test_the_rate_limit_spaces_calls(api_settings: None) -> None:
    cfg = parse_config(
        {
            "scope": {"organization": "1"},
            "limits": {"prefect_rate_limit": "test-calls", "prefect_calls_per_second": 5},
        }
    )
    limits.ensure_limits(cfg)
    start = time.monotonic()
    for _ in range(10):  # 5 at once (the bucket), then 5 more at 5 a second
        limits.take_call_slot("test-calls")
    assert time.monotonic() - start >= 0.8


def test_a_limit_missing_on_the_server_is_an_error(api_settings: None) -> None:
    with pytest.raises(limits.LimitMissing, match="never-created"), limits.mutation_slot("never-created"):
        pass
