"""Run the seed's commands with the real gcloud and kubectl against a simulator.

`seed_shell(sim)` gives a `SeedShell`: `run(template, project=..., context=..., **names)` fills the seed's
placeholders and runs the command with `sh -c`, gcloud pointed at the simulator's REST front end (one private
CLOUDSDK_CONFIG per test session) and kubectl at a kubeconfig whose current context is the named cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.seed.seed_commands import MANIFEST, fill

# Operations as short as gcloud's polling needs: it reads the operation right after the update call and
# otherwise sleeps 5 s between reads. Seconds of simulated time, at the tests' time scale (1 ms per second).
FAST_TIMINGS = {
    "update_cluster": 2.0,
    "update_node_pool": 2.0,
    "per_node": 1.0,
    "autopilot_per_node": 1.0,
    "probe_pod_start": 10.0,
    "probe_log_interval": 20.0,
}
TIME_SCALE = 0.001


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (the seed's commands need the real {program})")
    return path


@dataclass
class Ran:
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class SeedShell:
    sim: Any
    workdir: Path
    gcloud_config: Path
    log: list[Ran] = field(default_factory=list)

    def __post_init__(self) -> None:
        from gkesim.kube import write_kubeconfig
        from gkesim.rest import gcloud_env

        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(
            MANIFEST, self.workdir / MANIFEST.name
        )  # "save the manifest as read-only-port-metrics.yaml"
        self.gcloud_env = gcloud_env(self.sim.endpoints.rest, self.gcloud_config)
        kubeconfig = write_kubeconfig(
            self.sim.fleet, self.workdir / "kubeconfig.all", self.sim.host, self.sim.kube.port, self.sim.TOKEN
        )
        self._kubeconfig = yaml.safe_load(kubeconfig.read_text())

    def kubeconfig_for(self, context: str) -> Path:
        """A kubeconfig whose current context is this cluster (what `get-credentials` would leave behind)."""
        path = self.workdir / f"kubeconfig.{context.replace('/', '_')}"
        if not path.exists():
            path.write_text(
                yaml.safe_dump({**self._kubeconfig, "current-context": context}), encoding="utf-8"
            )
            path.chmod(0o600)
        return path

    def run(
        self,
        template: str,
        project: str | None = None,
        context: str | None = None,
        timeout: float = 90,
        **names: str,
    ) -> Ran:
        command = fill(template, **names)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "KUBECONFIG"))}
        env.update(self.gcloud_env)
        if project:
            env["CLOUDSDK_CORE_PROJECT"] = project
        if context:
            env["KUBECONFIG"] = str(self.kubeconfig_for(context))
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["sh", "-c", command], cwd=self.workdir, env=env, capture_output=True, text=True, timeout=timeout
        )
        ran = Ran(command, proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0)
        self.log.append(ran)
        return ran

    def ok(self, template: str, **kw: Any) -> str:
        ran = self.run(template, **kw)
        assert ran.returncode == 0, f"{ran.command} exited {ran.returncode}:\n{ran.stdout}\n{ran.stderr}"
        return ran.stdout

    def ok_all(self, *calls: tuple[str, dict[str, Any]]) -> list[str]:
        """Independent commands at once (gcloud spends most of its 1-3 s starting up); outputs in call order."""
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(self.ok, template, **kw) for template, kw in calls]
            return [f.result() for f in futures]


@pytest.fixture(scope="session")
def gcloud_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gcloud-state")


@pytest.fixture
def seed_shell(
    make_sim: Callable[..., Any], gcloud_config: Path, tmp_path: Path
) -> Callable[[dict[str, Any]], SeedShell]:
    """Start a simulator for this fleet (fast timings) and a shell with gcloud and kubectl pointed at it."""

    def make(fleet: dict[str, Any], time_scale: float = TIME_SCALE) -> SeedShell:
        fleet = {**fleet, "timings": {**FAST_TIMINGS, **fleet.get("timings", {})}}
        sim = make_sim(fleet, time_scale=time_scale)
        return SeedShell(sim, tmp_path / "shell", gcloud_config)

    return make


@pytest.fixture
def gcloud() -> str:
    return need("gcloud")


@pytest.fixture
def kubectl() -> str:
    return need("kubectl")
