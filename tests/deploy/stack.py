"""`make deploy` for tests: ops/deploy.sh on a free port with its own state folder, ops/stop.sh afterwards.

The tests go through the same scripts an operator runs, so what they prove is what `make deploy` does. Queries
use the REST API directly (httpx), so the test process needs no Prefect settings of its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tenacity import retry, retry_if_result, stop_after_attempt, wait_exponential

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output"

# Quicker hand-offs than the defaults (10-15 s each): workers poll, runs poll while paused.
FAST = {
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    "PORTCULLIS_APPROVAL_POLL_SECONDS": "1",
    "PREFECT_LOGGING_LEVEL": "INFO",
}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# What Prefect's own client retries: the server answers 503 when its database is busy (SQLite locked, a
# PostgreSQL connection lost) after rolling the request back, so sending it again is safe.
RETRYABLE = {429, 502, 503}


@retry(
    retry=retry_if_result(lambda r: r.status_code in RETRYABLE),
    wait=wait_exponential(multiplier=0.5, max=8),
    stop=stop_after_attempt(8),
    retry_error_callback=lambda state: state.outcome.result(),  # the last answer, raised by the caller
)
def send(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Deployed:
    state: Path
    port: int

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.ui}/api"

    def get(self, path: str) -> Any:
        r = send("GET", f"{self.api}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        return send("POST", f"{self.api}{path}", json=dict(body), timeout=60)

    def deployment(self, name: str) -> dict[str, Any]:
        return self.get(f"/deployments/name/{name}/{name}")

    def run(self, name: str, parameters: Mapping[str, Any], run_name: str | None = None) -> dict[str, Any]:
        dep = self.deployment(name)
        body: dict[str, Any] = {"parameters": dict(parameters)}
        if run_name:
            body["name"] = run_name
        r = self.post(f"/deployments/{dep['id']}/create_flow_run", body)
        r.raise_for_status()
        return r.json()

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return self.get(f"/flow_runs/{flow_run_id}")

    def wait_state(
        self, flow_run_id: str, types: set[str], timeout: float, poll: float = 1.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.flow_run(flow_run_id)
            if run["state"]["type"] in types:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"flow run {run['name']} is {run['state']['type']} after {timeout:.0f}s, "
                    f"not {sorted(types)}; worker log: {self.log_tail('worker-1')}"
                )
            time.sleep(poll)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.state / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(none)"
        )


def _script(name: str, env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "ops" / name)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def deployed(
    state: Path, extra_env: Mapping[str, str] | None = None, startup_timeout: float = 240
) -> Iterator[Deployed]:
    """Run ops/deploy.sh (server, pool, limits, deployments, workers); always run ops/stop.sh afterwards."""
    port = free_port()
    env = {
        **FAST,
        **(extra_env or {}),
        "PORTCULLIS_STATE": str(state),
        "PORTCULLIS_PREFECT_PORT": str(port),
    }
    stack = Deployed(state, port)
    try:
        done = _script("deploy.sh", env, startup_timeout)
        if done.returncode != 0:
            raise AssertionError(
                f"ops/deploy.sh failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                f"server log: {stack.log_tail('server')}"
            )
        yield stack
    finally:
        stopped = _script("stop.sh", env, 120)
        assert stopped.returncode == 0, stopped.stderr
        assert not list(state.glob("*.pid")), f"ops/stop.sh left pid files: {stopped.stdout}"
        assert not started_from(state), f"ops/stop.sh left processes running: {started_from(state)}"


def started_from(state: Path) -> list[int]:
    """Processes that carry the marker ops/deploy.sh exports for this state folder (flow runs included)."""
    marker = f"PORTCULLIS_DEPLOY_STATE={Path(os.path.realpath(state))}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def eventually(check: Callable[[], Any], timeout: float, poll: float = 1.0, what: str = "condition") -> Any:
    """Call `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
