"""Shared plumbing for the Portcullis benchmarks (bench/inventory.py, bench/scan.py, bench/rollout.py).

- `SimProcess`: the simulator in its own process (`portcullis sim ... --config-out F`), so the simulator and the
  Portcullis code under test do not share a GIL. Ready once the config file appears; stopped with SIGINT, after
  which it prints its invariant report (parsed into `SimProcess.invariants`).
- `bench_config`: the simulator's config with benchmark overrides per section.
- `run_measurement`: runs one measurement in a fresh child process (`python bench/X.py --child MODE ...`) so each
  gets its own peak RSS (VmHWM) and start-up state; the child prints one JSON line (`emit`).
- `CallCounter`: counts every gRPC call Portcullis makes, by method, through a client interceptor installed on
  the channels `tasks.access.clients.build_clients` creates (pages fetched by a pager included).
- `/proc` readers (peak RSS, CPU seconds), the load average, and markdown tables.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PORTCULLIS = ROOT / ".venv" / "bin" / "portcullis"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----- /proc -------------------------------------------------------------------------------------------------


def proc_status_mb(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM (peak resident set) of a process, in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


def peak_rss_mb(pid: int | str = "self") -> float:
    return proc_status_mb(pid)["VmHWM"]


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (all threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ----- the simulator subprocess ------------------------------------------------------------------------------


class SimProcess:
    """`portcullis sim ARGS --config-out F` in a child process; use as a context manager."""

    def __init__(self, args: Sequence[str], workdir: Path, start_timeout: float = 180.0) -> None:
        self.args = list(args)
        self.workdir = workdir
        self.config_path = workdir / "sim-config.yaml"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self.invariants: dict[str, Any] | None = None
        self.peak_rss_mb = 0.0
        self.cpu_seconds = 0.0
        self._out = workdir / "sim.out"
        self._err = workdir / "sim.err"

    def start(self) -> SimProcess:
        t0 = time.perf_counter()
        self.config_path.unlink(missing_ok=True)  # a stale file would look like readiness
        cmd = [str(PORTCULLIS), "sim", *self.args, "--config-out", str(self.config_path)]
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.monotonic() + self.start_timeout
        while not self.config_path.exists():  # written atomically once every server listens
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"simulator exited with {self.proc.returncode}: {self._err.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulator not ready after {self.start_timeout:.0f} s")
            time.sleep(0.05)
        self.startup_seconds = time.perf_counter() - t0
        return self

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_path.read_text())

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self.peak_rss_mb = peak_rss_mb(proc.pid)
                self.cpu_seconds = cpu_seconds(proc.pid)
            except OSError:
                pass
            # `portcullis sim` stops its servers on SIGINT and prints its invariant report
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        text = self._out.read_text(errors="replace")
        start = text.find('{\n  "invariants"')
        if start >= 0:
            try:
                self.invariants = json.loads(text[start:])["invariants"]
            except ValueError:
                self.invariants = None

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bench_config(sim: SimProcess, path: Path, **sections: dict[str, Any]) -> Path:
    """The simulator's own config with each given section's keys overridden."""
    data = sim.config()
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_fleet(spec: Any, path: Path) -> Path:
    """A FleetSpec as the YAML `portcullis sim --fleet` reads."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


# ----- measurements in child processes -----------------------------------------------------------------------


PRELUDE_ENV = "BENCH_PRELUDE"


def run_prelude() -> str | None:
    """In a child: execute the `--prelude` file, if any, before measuring (to try a change as a monkeypatch)."""
    path = os.environ.get(PRELUDE_ENV)
    if path:
        exec(compile(Path(path).read_text(), path, "exec"), {"__name__": "bench_prelude", "__file__": path})
    return path


def emit(result: dict[str, Any]) -> None:
    """The child's last stdout line: its result, with its own peak RSS and CPU time."""
    prelude = os.environ.get(PRELUDE_ENV)
    result = {**result, "peak_rss_mb": peak_rss_mb(), "cpu_seconds": cpu_seconds(), "prelude": prelude}
    print("RESULT " + json.dumps(result, default=str), flush=True)


def run_measurement(
    script: Path, args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600
) -> dict:
    """Run `python SCRIPT --child ARGS` and return the dict it emitted."""
    cmd = [sys.executable, str(script), "--child", *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise RuntimeError(
        f"measurement {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )


def prefect_env(home: Path) -> dict[str, str]:
    """An isolated Prefect home (temporary API server on its own SQLite file), quiet logs."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "results"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PREFECT_API_URL": "",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",  # the machine may be shared and busy
    }


# ----- counting calls ----------------------------------------------------------------------------------------


class CallCounter:
    """Counts gRPC calls by method name ("ListClusters", ...) on every channel created after `install()`."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def install(self) -> CallCounter:
        import grpc

        counter = self
        original = grpc.insecure_channel

        class _Count(grpc.UnaryUnaryClientInterceptor):
            def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
                with counter._lock:
                    counter.counts[details.method.rsplit("/", 1)[-1]] += 1
                return continuation(details, request)

        def channel(*args: Any, **kwargs: Any) -> grpc.Channel:
            return grpc.intercept_channel(original(*args, **kwargs), _Count())

        grpc.insecure_channel = (
            channel  # tasks.access.clients calls grpc.insecure_channel for plaintext endpoints
        )
        return self

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


# ----- output ------------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; `align` is one letter per column, l or r (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def goal_line(name: str, ok: bool, detail: str) -> str:
    return f"- {name}: {'met' if ok else 'MISSED'} ({detail})"


def header(title: str) -> str:
    return f"{title} ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load average {loadavg()})"
