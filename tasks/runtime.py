"""What every task of one run shares: the validated config, the clients, and the retry policy with its budget.

Built once per process and config, so Prefect tasks running in threads reuse gRPC channels instead of
opening their own, and one retry budget covers the whole run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from config.schema import Config, load_config
from tasks.clients import Clients, build_clients
from tasks.retry import Caller


@dataclass
class Runtime:
    config: Config
    clients: Clients
    caller: Caller
    node_reads: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(32))

    @classmethod
    def build(cls, config: Config) -> Runtime:
        clients = build_clients(config.api, kube_pool_size=config.scan.concurrency)
        return cls(
            config, clients, Caller(config.limits), threading.BoundedSemaphore(config.scan.concurrency)
        )

    def close(self) -> None:
        self.clients.close()


_cache: dict[tuple[str, float], Runtime] = {}
_lock = threading.Lock()


def runtime_for(config_path: str) -> Runtime:
    """The runtime for a config file in this process (rebuilt when the file changes)."""
    path = Path(config_path).resolve()
    key = (str(path), path.stat().st_mtime)
    with _lock:
        if key not in _cache:
            _cache[key] = Runtime.build(load_config(path))
        return _cache[key]


def reset_runtimes() -> None:
    """Forget cached runtimes (a new run should start with a fresh retry budget)."""
    with _lock:
        for rt in _cache.values():
            rt.close()
        _cache.clear()
