"""Shared fixtures: an isolated Prefect home and API for the session, and simulators built from small fleets."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_HOME = tempfile.mkdtemp(prefix="portcullis-test-prefect-")
os.environ["PREFECT_HOME"] = _HOME  # before prefect is imported: never touch the developer's ~/.prefect
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(Path(_HOME) / "results")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402
import yaml  # noqa: E402

from gkesim.spec import FleetSpec  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One Prefect API server for the whole session; subprocesses find it through PREFECT_API_URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Any]]:
    """Start simulators from fleet dicts; all are stopped at the end of the test."""
    from gkesim.server import Simulator

    started: list[Simulator] = []

    def make(fleet: dict[str, Any], time_scale: float = 0.001, **kwargs: Any) -> Simulator:
        sim = Simulator.from_spec(FleetSpec.model_validate(fleet), time_scale=time_scale, **kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a Portcullis config pointing at a simulator, with section overrides."""

    def write(sim: Any, name: str = "portcullis.yaml", **sections: dict[str, Any]) -> Path:
        from flows.simcmd import sim_config

        data = sim_config(sim.endpoints, sim.fleet.spec, window_seconds=1.0)
        for key, value in sections.items():
            data[key] = {**data.get(key, {}), **value}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write
