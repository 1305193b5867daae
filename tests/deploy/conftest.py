"""One `make deploy` (simulator, SQLite server with the UI, one worker) shared by the browser and server tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.stack import Deployed, deployed

REDIS_DBS = range(11, 16)  # db indexes these tests may claim, one per concurrent run; flushed, nothing else
CLAIM = "portcullis-scale-test:owner"  # pid of the test process using the db index


@pytest.fixture(scope="session")
def local_deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with deployed(tmp_path_factory.mktemp("deploy")) as stack:
        yield stack


@pytest.fixture
def redis_db() -> Iterator[Any]:
    """A Redis db index of this test's own, emptied before and after (only that index).

    Prefect's stream names are fixed (`events`), so two scale tests on one machine must not share an index: each
    claims a free one among REDIS_DBS with a key that names its process, and takes over only a dead process's.
    """
    import redis

    for index in REDIS_DBS:
        client = redis.Redis(host="127.0.0.1", port=6379, db=index, socket_timeout=10)
        try:
            client.ping()
        except redis.RedisError as exc:
            pytest.fail(
                f"Redis is not reachable at 127.0.0.1:6379 ({exc}). The scale test needs it: on these machines "
                "start it with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`."
            )
        owner = client.get(CLAIM)
        if owner is not None and _alive(int(owner)):
            client.close()
            continue
        if owner is None and client.dbsize():
            client.close()  # someone else's data: never flushed by this test
            continue
        client.flushdb()
        if client.set(CLAIM, os.getpid(), nx=True):
            break
        client.close()
    else:
        pytest.fail(f"no free Redis db index among {list(REDIS_DBS)} (each holds another run's data)")
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
