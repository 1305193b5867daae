"""One `make deploy` (simulator, SQLite server with the UI, one worker) shared by the browser and server tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.stack import Deployed, deployed


@pytest.fixture(scope="session")
def local_deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with deployed(tmp_path_factory.mktemp("deploy")) as stack:
        yield stack
