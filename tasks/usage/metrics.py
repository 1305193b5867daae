"""The usage signal: kubelet_http_requests_total, read from a kubelet's /metrics.

`server_type="readonly"` series count requests on port 10255 since the kubelet started (FACTS.md). A
series appears only after its first request, so any readonly series means the port was used; two
readings some time apart tell whether it is still used. Our own read goes through port 10250 and always
creates a `readwrite` series, so a payload with no family at all is inconclusive, never "clear".

A kubelet /metrics payload is several MB. Parsing it whole with prometheus_client takes ~60x longer
than picking out the family's lines first, so `filter_request_lines` scans the raw byte stream for the
metric name (C-level `bytes.find`) and only the few kept lines are decoded and parsed.

Everything here is pure: callers hand in byte chunks (e.g. a streamed HTTP response) or log lines.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "DEFAULT_MAX_BYTES",
    "METRIC",
    "FilterResult",
    "GzipError",
    "MetricsFormatError",
    "NodeReading",
    "PayloadProblem",
    "ProbeLog",
    "ReadonlyIncrease",
    "RequestKey",
    "Usage",
    "filter_request_lines",
    "gunzip",
    "increase",
    "parse_probe_log_lines",
    "parse_request_counts",
    "read_node_metrics",
    "reading_from_counts",
    "reading_from_filter",
]

METRIC = "kubelet_http_requests_total"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Real payloads are a few MB (tens with many pods); past this we stop reading rather than buffer more."""

RequestKey = tuple[str, str]
"""(path, server_type), e.g. ("metrics", "readonly")."""

_NAME = METRIC.encode()
_HELP = b"# HELP " + _NAME
_TYPE = b"# TYPE " + _NAME
_SAMPLE_END = (b"{", b" ", b"\t")
# A partial line this long can be classified: it either starts like a family line or is skipped.
_DECIDE_LEN = len(_HELP) + 1


class MetricsFormatError(ValueError):
    """The text is not Prometheus exposition format, or the family's samples lack the labels we need."""


class PayloadProblem(StrEnum):
    """Why a /metrics stream cannot be trusted as a whole."""

    EMPTY = "empty"  # no bytes at all: the kubelet always answers with something
    TRUNCATED = "truncated"  # the last line had no newline: the stream was cut
    TOO_LARGE = "too_large"  # past max_bytes; we stopped reading


@dataclass(frozen=True)
class FilterResult:
    """The family's lines picked out of a /metrics stream, and what we learnt about the stream."""

    text: str
    """The kept lines (HELP, TYPE and samples of kubelet_http_requests_total), each newline-terminated."""
    sample_lines: int
    bytes_read: int
    problem: PayloadProblem | None = None

    @property
    def family_present(self) -> bool:
        """At least one sample line: HELP/TYPE alone carry no signal."""
        return self.sample_lines > 0

    @property
    def truncated(self) -> bool:
        return self.problem is PayloadProblem.TRUNCATED

    @property
    def too_large(self) -> bool:
        return self.problem is PayloadProblem.TOO_LARGE


def _line_kind(line: bytes) -> int:
    """2 for a sample line of the family, 1 for its HELP/TYPE line, 0 for anything else."""
    if line.endswith(b"\r"):
        line = line[:-1]
    n = len(_NAME)
    if line.startswith(_NAME):
        return 2 if len(line) == n or line[n : n + 1] in _SAMPLE_END else 0
    if line.startswith((_HELP, _TYPE)):
        rest = line[7 + n : 8 + n]
        return 1 if rest in (b"", b" ", b"\t") else 0
    return 0


def _may_be_family(prefix: bytes) -> bool:
    """Could a line starting with `prefix` be one we keep? Lets us drop long foreign lines early."""
    for head in (_NAME, _HELP, _TYPE):
        k = min(len(prefix), len(head))
        if prefix[:k] == head[:k]:
            return True
    return False


def _scan(buf: bytes, start: int, end: int, kept: list[bytes]) -> tuple[int, int]:
    """Keep the family's lines in buf[start:end] (whole lines, ending with a newline).

    Returns the samples kept and where the last kept line ends (-1 if none was kept).
    """
    samples = 0
    last = -1
    pos = start
    while True:
        hit = buf.find(_NAME, pos, end)
        if hit < 0:
            return samples, last
        nl = buf.rfind(b"\n", start, hit)
        line_start = start if nl < 0 else nl + 1
        line_end = buf.find(b"\n", hit, end)
        line = buf[line_start:line_end]
        kind = _line_kind(line)
        if kind:
            kept.append(line.rstrip(b"\r"))
            samples += kind == 2
            last = line_end + 1
        pos = line_end + 1


class _Family:
    """Where the stream stands relative to the family's block: seen it, and is it over?

    The text format keeps a family's lines together (the Go client writes families one after another), so
    once a whole line that is not the family follows the family's lines, the rest cannot hold any of them.
    """

    def __init__(self) -> None:
        self.seen = False
        self.ended = False

    def region(self, start: int, end: int, last_kept: int) -> None:
        """Whole lines buf[start:end] were scanned; `last_kept` is where the last kept one ends (-1: none)."""
        if last_kept >= 0:
            self.seen = True
            self.ended = last_kept < end
        elif end > start:
            self.ended = self.seen

    def foreign_line(self) -> None:
        """A line that cannot be the family's (too long and starting otherwise)."""
        self.ended = self.seen


def filter_request_lines(
    chunks: Iterable[bytes], max_bytes: int | None = DEFAULT_MAX_BYTES, stop_after_family: bool = False
) -> FilterResult:
    """Stream a kubelet /metrics response and keep only the kubelet_http_requests_total lines.

    Lines may be split anywhere across chunks. Memory stays bounded by the kept lines plus one partial
    line that could still be a family line: other long lines are skipped as soon as their start shows
    they are foreign. A last line without a newline means the stream was cut: it is dropped (its value
    could be cut too) and the result says TRUNCATED. Past `max_bytes` (None: no limit) reading stops
    with TOO_LARGE and the lines kept so far, so a hostile 100 MB payload costs at most `max_bytes`.
    With `stop_after_family`, reading stops at the first whole line after the family's block (the family
    sits ~9% into a kubelet's payload): the rest is left in `chunks` for the caller to drain or drop.
    """
    kept: list[bytes] = []
    pending: list[bytes] = []  # start of the current line, if it may be a family line
    pending_len = 0
    skipping = False  # inside a foreign line whose newline has not arrived yet
    samples = 0
    total = 0
    family = _Family()

    def scan(buf: bytes, start: int, end: int) -> None:
        nonlocal samples
        found, last = _scan(buf, start, end, kept)
        samples += found
        family.region(start, end, last)

    def forget_if_foreign() -> None:
        """Drop a partial line whose start already shows it is not the family's, and skip to its newline."""
        nonlocal pending, pending_len, skipping
        if pending_len >= _DECIDE_LEN and not _may_be_family(b"".join(pending)[:_DECIDE_LEN]):
            pending, pending_len, skipping = [], 0, True
            family.foreign_line()

    for chunk in chunks:
        if not chunk:
            continue
        chunk = bytes(chunk)
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            return FilterResult(_join(kept), samples, total, PayloadProblem.TOO_LARGE)
        first_nl = chunk.find(b"\n")
        if first_nl < 0:
            if not skipping:
                pending.append(chunk)
                pending_len += len(chunk)
                forget_if_foreign()
        else:
            if skipping:
                skipping = False
            elif pending:
                pending.append(chunk[: first_nl + 1])
                head = b"".join(pending)
                scan(head, 0, len(head))
            else:
                scan(chunk, 0, first_nl + 1)
            last_nl = chunk.rfind(b"\n")
            scan(chunk, first_nl + 1, last_nl + 1)
            tail = chunk[last_nl + 1 :]
            pending, pending_len = ([tail], len(tail)) if tail else ([], 0)
            forget_if_foreign()
        if stop_after_family and family.ended:
            return FilterResult(_join(kept), samples, total)
    if total == 0:
        problem: PayloadProblem | None = PayloadProblem.EMPTY
    elif pending or skipping:
        problem = PayloadProblem.TRUNCATED
    else:
        problem = None
    return FilterResult(_join(kept), samples, total, problem)


class GzipError(ValueError):
    """A gzip-encoded body that does not decompress: corrupt, or cut off inside a member."""


def gunzip(chunks: Iterable[bytes], piece: int = 256 * 1024) -> Iterator[bytes]:
    """Decompress a gzip body (one member or a series, RFC 1952) lazily, at most `piece` bytes at a time.

    Lazily, so a reader that stops early (`stop_after_family`) never inflates the rest; in bounded pieces, so
    a small hostile body cannot expand into one huge chunk before `max_bytes` is checked.
    """
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    fed = False  # the current member has had input
    try:
        for chunk in chunks:
            data = bytes(chunk)
            while data:
                fed = True
                out = inflater.decompress(data, piece)
                if out:
                    yield out
                while len(out) == piece:  # more output may wait inside zlib for the same input
                    out = inflater.decompress(inflater.unconsumed_tail, piece)
                    if out:
                        yield out
                if inflater.eof:
                    data = inflater.unused_data
                    inflater, fed = zlib.decompressobj(zlib.MAX_WBITS | 16), False
                else:
                    data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise GzipError(f"the gzip-encoded body does not decompress: {exc}") from exc
    if fed:
        raise GzipError("the gzip-encoded body ends inside a member")


def _join(lines: list[bytes]) -> str:
    return "".join(line.decode("utf-8", "replace") + "\n" for line in lines)


def _sample_series(text: str) -> Iterable[tuple[dict[str, str], float]]:
    """(labels, value) of every kubelet_http_requests_total sample in `text`, validated."""
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name != METRIC:
                    continue
                value = float(sample.value)
                if not math.isfinite(value) or value < 0:
                    raise MetricsFormatError(f"{METRIC} has a non-counter value {sample.value!r}")
                if "path" not in sample.labels or "server_type" not in sample.labels:
                    raise MetricsFormatError(f"{METRIC} sample without path/server_type: {sample.labels}")
                yield sample.labels, value
    except MetricsFormatError:
        raise
    except (ValueError, IndexError, KeyError) as exc:
        # prometheus_client reports malformed text as ValueError; the others are belt and braces.
        raise MetricsFormatError(f"not Prometheus text format: {exc}") from exc


def parse_request_counts(text: str) -> dict[RequestKey, float]:
    """Sum kubelet_http_requests_total by (path, server_type), across method and long_running.

    Uses prometheus_client's parser, so label escapes (\\", \\\\, \\n) are handled. Other families in
    `text` are ignored. Raises MetricsFormatError for text that is not Prometheus format, for
    non-finite or negative values, and for samples missing `path` or `server_type` (without them a
    reading cannot say which port was used).
    """
    counts: dict[RequestKey, float] = {}
    for labels, value in _sample_series(text):
        key = (labels["path"], labels["server_type"])
        counts[key] = counts.get(key, 0.0) + value
    return counts


class Usage(StrEnum):
    """What one reading says about port 10255 on its node."""

    READONLY_SEEN = "readonly_seen"  # used since the kubelet started (maybe not any more)
    NO_READONLY = "no_readonly"  # the family is there and has no readonly series
    INCONCLUSIVE = "inconclusive"  # no family, or the payload could not be read whole


@dataclass(frozen=True)
class NodeReading:
    """One node's kubelet_http_requests_total, reduced to what the rollout decides on."""

    readonly: dict[str, float] = field(default_factory=dict)
    """path -> requests on port 10255 since the kubelet started."""
    readwrite_total: float = 0.0
    family_present: bool = False
    error: str | None = None

    @property
    def readonly_total(self) -> float:
        return sum(self.readonly.values())

    @property
    def conclusive(self) -> bool:
        """Whole payload read and the family present: an empty `readonly` then really means unused."""
        return self.error is None and self.family_present

    @property
    def usage(self) -> Usage:
        """Readonly series are evidence even in a cut payload; their absence counts only when conclusive."""
        if self.readonly_total > 0:
            return Usage.READONLY_SEEN
        return Usage.NO_READONLY if self.conclusive else Usage.INCONCLUSIVE


def reading_from_counts(
    counts: Mapping[RequestKey, float], family_present: bool, error: str | None = None
) -> NodeReading:
    """Split parsed counts into readonly per path and the readwrite total."""
    readonly: dict[str, float] = {}
    readwrite = 0.0
    for (path, server_type), value in counts.items():
        if server_type == "readonly":
            readonly[path] = readonly.get(path, 0.0) + value
        elif server_type == "readwrite":
            readwrite += value
    return NodeReading(readonly, readwrite, family_present, error)


def reading_from_filter(result: FilterResult) -> NodeReading:
    """Parse a filter result into a NodeReading; stream problems and parse errors become `error`."""
    errors: list[str] = []
    if result.problem is PayloadProblem.TOO_LARGE:
        errors.append(f"payload larger than the limit; stopped after {result.bytes_read} bytes")
    elif result.problem is PayloadProblem.TRUNCATED:
        errors.append(f"payload cut off mid-line after {result.bytes_read} bytes")
    elif result.problem is PayloadProblem.EMPTY:
        errors.append("empty /metrics response")
    try:
        counts = parse_request_counts(result.text)
    except MetricsFormatError as exc:
        counts = {}
        errors.append(str(exc))
    return reading_from_counts(counts, result.family_present, "; ".join(errors) or None)


def read_node_metrics(
    chunks: Iterable[bytes], max_bytes: int | None = DEFAULT_MAX_BYTES, stop_after_family: bool = False
) -> NodeReading:
    """Filter then parse a streamed /metrics response: the one call a scan task needs per node."""
    return reading_from_filter(filter_request_lines(chunks, max_bytes, stop_after_family))


@dataclass(frozen=True)
class ReadonlyIncrease:
    """Readonly requests between two readings of the same node: is port 10255 still in use?"""

    per_path: dict[str, float]
    """path -> new requests (only paths that grew)."""
    restarted: bool
    """A counter went down: the kubelet restarted, and per_path is the second reading's counts."""
    error: str | None = None

    @property
    def total(self) -> float:
        return sum(self.per_path.values())

    @property
    def in_use(self) -> bool:
        return self.total > 0


def increase(first: NodeReading, second: NodeReading) -> ReadonlyIncrease:
    """Per-path readonly increase from `first` to `second` (taken later, same node).

    Counters only reset when the kubelet restarts. Our own reads raise the readwrite total every time,
    so a lower readwrite total or any lower readonly path means a restart: the second reading's counts
    are then the increase (all requests since the restart), flagged `restarted=True`. A restart followed
    by enough traffic to climb past the old values cannot be seen from two readings; it can only make
    the increase look smaller, never invent one. Inconclusive readings give an error, never "unused".
    """
    for label, reading in (("first", first), ("second", second)):
        if not reading.conclusive:
            why = reading.error or f"no {METRIC} family"
            return ReadonlyIncrease({}, False, f"{label} reading inconclusive: {why}")
    restarted = second.readwrite_total < first.readwrite_total or any(
        second.readonly.get(path, 0.0) < value for path, value in first.readonly.items()
    )
    if restarted:
        return ReadonlyIncrease({p: v for p, v in second.readonly.items() if v > 0}, True)
    grown = {p: v - first.readonly.get(p, 0.0) for p, v in second.readonly.items()}
    return ReadonlyIncrease({p: d for p, d in grown.items() if d > 0}, False)


# kubectl logs --prefix prints "[pod/NAME/CONTAINER] "; --timestamps adds an RFC 3339 time.
_LOG_LINE_RE = re.compile(
    r"(?:\[(?P<prefix>[^\]]*)\]\s*)?(?:(?P<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}T\S+)\s+)?(?P<rest>.*)", re.ASCII
)


@dataclass(frozen=True)
class ProbeLog:
    """The Autopilot probe DaemonSet's logs, reduced to the latest reading per pod."""

    readings: dict[str, NodeReading]
    """pod name ("" when the lines carry no `--prefix`) -> reading from its latest printed round."""
    garbage_lines: int
    """Lines that are not the family (curl errors, shell noise) or that failed to parse."""


def _pod_of(prefix: str | None) -> str:
    if not prefix:
        return ""
    parts = prefix.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "pod" else prefix


def parse_probe_log_lines(lines: Iterable[str]) -> ProbeLog:
    """Readings from the seed's probe DaemonSet logs (`kubectl logs --all-containers --prefix`).

    The probe prints `curl .../metrics | grep kubelet_http_requests_total` every 20 s, so each round
    starts with the family's `# HELP` line. The latest round per pod wins (counters only grow, and a
    kubelet restart shows only in the newest round). Without HELP lines, the latest value per series
    wins. Only the latest round is parsed, so a malformed family line in an older round is not counted.
    """
    rounds: dict[str, list[str]] = {}
    garbage = 0
    for raw in lines:
        match = _LOG_LINE_RE.fullmatch(raw.rstrip("\r\n"))
        assert match is not None  # every group is optional; `rest` takes anything
        rest = match["rest"].strip()
        pod = _pod_of(match["prefix"])
        current = rounds.setdefault(pod, [])
        if not rest:
            continue
        if rest.startswith("# HELP " + METRIC):
            current.clear()
        elif rest.startswith("# TYPE " + METRIC):
            continue
        elif _line_kind(rest.encode()) == 2:
            current.append(rest)
        else:
            garbage += 1
    readings: dict[str, NodeReading] = {}
    for pod, sample_lines in rounds.items():
        series: dict[tuple[tuple[str, str], ...], tuple[RequestKey, float]] = {}
        for line in sample_lines:
            try:
                for labels, value in _sample_series(line + "\n"):
                    key = (labels["path"], labels["server_type"])
                    series[tuple(sorted(labels.items()))] = (key, value)
            except MetricsFormatError:
                garbage += 1
        counts: dict[RequestKey, float] = {}
        for key, value in series.values():
            counts[key] = counts.get(key, 0.0) + value
        readings[pod] = reading_from_counts(counts, family_present=bool(series))
    return ProbeLog(readings, garbage)
