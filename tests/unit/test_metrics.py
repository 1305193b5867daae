"""The usage signal: streaming filter, parsing, readings, increases and the Autopilot probe's logs.

Real kubelet payloads live in tests/fixtures/kubelet (see SOURCE.md there).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.usage.metrics import (
    METRIC,
    FilterResult,
    GzipError,
    MetricsFormatError,
    NodeReading,
    PayloadProblem,
    Usage,
    filter_request_lines,
    gunzip,
    increase,
    parse_probe_log_lines,
    parse_request_counts,
    read_node_metrics,
    reading_from_filter,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kubelet"
KUBELET_1_21 = (FIXTURES / "kubelet_metrics_1_21.txt").read_bytes()
KUBELET_1_10 = (FIXTURES / "kubelet_metrics.txt").read_bytes()
READWRITE_1_21 = 80930 + 81835 + 80931 + 80937 + 645292 + 80931 + 3  # the fixture's seven series

READONLY_LINES = [
    b'kubelet_http_requests_total{long_running="false",method="GET",path="metrics",server_type="readonly"} 2549',
    b'kubelet_http_requests_total{long_running="false",method="GET",path="stats",server_type="readonly"} 2549',
    b'kubelet_http_requests_total{long_running="false",method="HEAD",path="stats",server_type="readonly"} 1',
    b'kubelet_http_requests_total{long_running="false",method="GET",path="pods",server_type="readonly"} 1',
]
# Lines that mention the name but are not the family: none of them may be kept.
DECOYS = [
    b'kubelet_http_requests_totalx{path="pods",server_type="readonly"} 9',
    b'kubelet_http_requests_total_created{path="pods",server_type="readonly"} 9',
    b'xkubelet_http_requests_total{path="pods",server_type="readonly"} 9',
    b"# HELP kubelet_http_requests_totals not ours",
    b"# some comment about kubelet_http_requests_total",
    b'other_metric{note="kubelet_http_requests_total"} 1',
]


def _synthetic() -> bytes:
    """The 1.21 payload with readonly series inside the family block and decoys elsewhere."""
    lines = KUBELET_1_21.split(b"\n")
    last_family = max(i for i, line in enumerate(lines) if line.startswith(METRIC.encode()))
    lines[last_family + 1 : last_family + 1] = READONLY_LINES
    lines[100:100] = DECOYS
    return b"\n".join(lines)


SYNTHETIC = _synthetic()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _naive_filter(data: bytes) -> list[str]:
    """The obvious line-by-line filter, to compare the streaming one against."""
    kept = []
    for line in data.decode().splitlines():
        for head, ends in ((METRIC, "{ \t"), ("# HELP " + METRIC, " \t"), ("# TYPE " + METRIC, " \t")):
            after = line[len(head) : len(head) + 1]
            if line.startswith(head) and (after == "" or after in ends):
                kept.append(line)
                break
    return kept


# --- the real fixtures -----------------------------------------------------------------------------


def test_real_1_21_payload_has_readwrite_only() -> None:
    result = filter_request_lines(_chunks(KUBELET_1_21, 65536))
    assert result.problem is None and result.family_present
    assert result.sample_lines == 7
    assert result.text.startswith("# HELP kubelet_http_requests_total ")
    reading = reading_from_filter(result)
    assert reading == NodeReading({}, float(READWRITE_1_21), True, None)
    assert reading.usage is Usage.NO_READONLY and reading.conclusive


def test_real_1_10_payload_has_no_family_so_it_is_inconclusive() -> None:
    result = filter_request_lines([KUBELET_1_10])
    assert result.problem is None
    assert not result.family_present and result.text == ""  # its http_requests_total is another metric
    reading = reading_from_filter(result)
    assert reading.family_present is False and reading.error is None
    assert reading.usage is Usage.INCONCLUSIVE and not reading.conclusive


def test_synthetic_payload_finds_readonly_and_skips_decoys() -> None:
    result = filter_request_lines([SYNTHETIC])
    assert result.text.splitlines() == _naive_filter(SYNTHETIC)
    assert result.sample_lines == 7 + len(READONLY_LINES)
    reading = reading_from_filter(result)
    assert reading.readonly == {"metrics": 2549.0, "stats": 2550.0, "pods": 1.0}  # summed across methods
    assert reading.readwrite_total == READWRITE_1_21
    assert reading.usage is Usage.READONLY_SEEN


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SYNTHETIC)), max_size=60))
def test_chunk_boundaries_do_not_matter(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(SYNTHETIC)]
    chunks = [SYNTHETIC[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert filter_request_lines(chunks) == filter_request_lines([SYNTHETIC])


@pytest.mark.parametrize("size", [1, 2, 7, 27, 28, 36, 37, 4096])
def test_small_fixed_chunks(size: int) -> None:
    # Sizes around the metric name's length (27) and the HELP prefix's (34 + 1).
    assert filter_request_lines(_chunks(SYNTHETIC, size)) == filter_request_lines([SYNTHETIC])


# --- stream problems -------------------------------------------------------------------------------


def test_cut_inside_a_family_line_is_truncated_and_drops_the_partial_line() -> None:
    cut = SYNTHETIC.index(READONLY_LINES[1]) + 40
    result = filter_request_lines(_chunks(SYNTHETIC[:cut], 1000))
    assert result.problem is PayloadProblem.TRUNCATED and result.truncated
    assert 'path="stats",server_type="readonly"' not in result.text
    reading = reading_from_filter(result)
    assert reading.readonly == {"metrics": 2549.0}  # lines before the cut still count as evidence
    assert reading.usage is Usage.READONLY_SEEN
    assert "cut off" in reading.error


def test_cut_inside_a_foreign_line_is_truncated_and_inconclusive() -> None:
    cut = len(KUBELET_1_21) - 5
    reading = read_node_metrics(_chunks(KUBELET_1_21[:cut], 333))
    assert reading.readwrite_total == READWRITE_1_21
    assert reading.error is not None and reading.usage is Usage.INCONCLUSIVE


def test_empty_stream() -> None:
    result = filter_request_lines(iter([b"", b""]))
    assert result == FilterResult("", 0, 0, PayloadProblem.EMPTY)
    assert read_node_metrics([]).usage is Usage.INCONCLUSIVE


def test_hostile_payload_stops_at_max_bytes_without_reading_on() -> None:
    megabyte = b"x" * 1_000_000  # one line with no newline, 100 times over
    consumed = 0

    def hostile() -> Iterator[bytes]:
        nonlocal consumed
        for _ in range(100):
            consumed += 1
            yield megabyte

    result = filter_request_lines(hostile(), max_bytes=10_000_000)
    assert result.problem is PayloadProblem.TOO_LARGE and result.too_large
    assert consumed == 11 and result.bytes_read == 11_000_000
    assert "larger than the limit" in reading_from_filter(result).error


def test_too_large_keeps_evidence_seen_before_the_limit() -> None:
    result = filter_request_lines(_chunks(SYNTHETIC, 1000), max_bytes=len(SYNTHETIC) - 1)
    assert result.too_large
    reading = reading_from_filter(result)
    assert reading.usage is Usage.READONLY_SEEN and reading.error is not None


def test_unlimited_long_line_is_skipped_not_buffered() -> None:
    chunks = [b"x" * 100_000] * 50 + [b"\n", READONLY_LINES[0], b"\n"]
    result = filter_request_lines(chunks, max_bytes=None)
    assert result.problem is None and result.sample_lines == 1


def test_crlf_line_endings() -> None:
    data = SYNTHETIC.replace(b"\n", b"\r\n")
    assert filter_request_lines(_chunks(data, 500)).text == filter_request_lines([SYNTHETIC]).text


def test_help_and_type_without_samples_is_not_the_family() -> None:
    text = b"# HELP kubelet_http_requests_total x\n# TYPE kubelet_http_requests_total counter\nfoo 1\n"
    result = filter_request_lines([text])
    assert result.sample_lines == 0 and not result.family_present
    assert result.text.count("\n") == 2


# --- stopping after the family, and gzip bodies ----------------------------------------------------

FAMILY_END = SYNTHETIC.index(b"\n", SYNTHETIC.index(READONLY_LINES[-1])) + 1


def test_stop_after_family_keeps_the_same_lines_and_reads_little_past_them() -> None:
    result = filter_request_lines(_chunks(SYNTHETIC, 4096), stop_after_family=True)
    full = filter_request_lines([SYNTHETIC])
    assert (result.text, result.sample_lines, result.problem) == (full.text, full.sample_lines, None)
    assert FAMILY_END < result.bytes_read <= FAMILY_END + 2 * 4096 < len(SYNTHETIC)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SYNTHETIC)), max_size=60))
def test_stop_after_family_chunk_boundaries_do_not_matter(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(SYNTHETIC)]
    chunks = [SYNTHETIC[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    result = filter_request_lines(chunks, stop_after_family=True)
    assert result.text == filter_request_lines([SYNTHETIC]).text and result.problem is None


@pytest.mark.parametrize("size", [1, 27, 36, 37, 4096])
def test_stop_after_family_small_chunks(size: int) -> None:
    result = filter_request_lines(_chunks(SYNTHETIC, size), stop_after_family=True)
    assert result.text == filter_request_lines([SYNTHETIC]).text
    assert result.bytes_read < FAMILY_END + size + 200  # the next line is enough to know


def test_stop_after_family_ignores_a_cut_after_the_family() -> None:
    """Families are written whole, so what follows the block cannot change the reading."""
    cut = FAMILY_END + 5000
    assert read_node_metrics(_chunks(SYNTHETIC[:cut], 1000)).error is not None
    reading = read_node_metrics(_chunks(SYNTHETIC[:cut], 1000), stop_after_family=True)
    assert reading == read_node_metrics([SYNTHETIC]) and reading.conclusive


def test_stop_after_family_still_sees_a_cut_inside_the_family() -> None:
    cut = SYNTHETIC.index(READONLY_LINES[1]) + 40
    result = filter_request_lines(_chunks(SYNTHETIC[:cut], 1000), stop_after_family=True)
    assert result.truncated


def test_stop_after_family_reads_on_when_there_is_no_family() -> None:
    result = filter_request_lines(_chunks(KUBELET_1_10, 1000), stop_after_family=True)
    assert result.bytes_read == len(KUBELET_1_10) and not result.family_present and result.problem is None


def test_stop_after_family_with_help_and_type_only() -> None:
    text = b"# HELP kubelet_http_requests_total x\n# TYPE kubelet_http_requests_total counter\nfoo 1\nbar 2\n"
    result = filter_request_lines([text], stop_after_family=True)
    assert result.sample_lines == 0 and not result.family_present


def _members(data: bytes, cuts: list[int]) -> bytes:
    bounds = [0, *sorted(cuts), len(data)]
    return b"".join(zlib.compress(data[a:b], 6, wbits=31) for a, b in zip(bounds, bounds[1:], strict=False))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=len(SYNTHETIC)), max_size=4),
    st.lists(st.integers(min_value=1, max_value=50_000), max_size=30),
)
def test_gunzip_one_member_or_several_any_chunking(members: list[int], cuts: list[int]) -> None:
    body = _members(SYNTHETIC, members)
    bounds = [0, *sorted(c for c in cuts if c < len(body)), len(body)]
    chunks = [body[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert b"".join(gunzip(chunks, piece=8192)) == SYNTHETIC


def test_gunzip_yields_bounded_pieces_lazily() -> None:
    bomb = zlib.compress(b"x" * 50_000_000, 9, wbits=31)  # ~50 KB that inflate to 50 MB
    pieces = gunzip([bomb], piece=65536)
    assert all(len(next(pieces)) <= 65536 for _ in range(10))
    result = filter_request_lines(gunzip([bomb], piece=65536), max_bytes=1_000_000)
    assert result.too_large and result.bytes_read <= 1_000_000 + 65536


def test_gunzip_corrupt_or_cut_body_is_an_error() -> None:
    body = zlib.compress(SYNTHETIC, 6, wbits=31)
    with pytest.raises(GzipError, match="ends inside a member"):
        b"".join(gunzip([body[: len(body) // 2]]))
    with pytest.raises(GzipError, match="does not decompress"):
        b"".join(gunzip([b"\x1f\x8b\x08\x00" + SYNTHETIC[:1000]]))
    with pytest.raises(GzipError):
        b"".join(gunzip([SYNTHETIC[:1000]]))  # plain text said to be gzip


def test_gunzip_then_stop_after_family_inflates_little() -> None:
    body = zlib.compress(SYNTHETIC, 6, wbits=31)
    result = filter_request_lines(gunzip(_chunks(body, 16384), piece=16384), stop_after_family=True)
    assert result.text == filter_request_lines([SYNTHETIC]).text
    assert result.bytes_read < FAMILY_END + 3 * 16384


# --- parsing ---------------------------------------------------------------------------------------

COUNT_CASES = [
    pytest.param(
        'kubelet_http_requests_total{long_running="false",method="GET",path="pods",server_type="readonly"} 2\n'
        'kubelet_http_requests_total{long_running="true",method="GET",path="pods",server_type="readonly"} 3\n',
        {("pods", "readonly"): 5.0},
        id="sum-across-long_running",
    ),
    pytest.param(
        'kubelet_http_requests_total{path="a\\"b\\\\c\\nd",server_type="readonly",method="GET"} 1\n',
        {('a"b\\c\nd', "readonly"): 1.0},
        id="label-escapes",
    ),
    pytest.param(
        'kubelet_http_requests_total{server_type="readonly",path="x,y=}"} 4e3\n',
        {("x,y=}", "readonly"): 4000.0},
        id="label-order-and-punctuation",
    ),
    pytest.param(
        "# TYPE kubelet_http_requests_total counter\n"
        'kubelet_http_requests_total{path="pods",server_type="readwrite"} 7 1700000000000\n'
        'other_total{path="pods",server_type="readonly"} 9\n',
        {("pods", "readwrite"): 7.0},
        id="timestamp-and-other-families-ignored",
    ),
    pytest.param("", {}, id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), COUNT_CASES)
def test_parse_request_counts(text: str, expected: dict) -> None:
    assert parse_request_counts(text) == expected


BAD_TEXT = [
    pytest.param("<html><body>502 Bad Gateway</body></html>\n", id="html"),
    pytest.param('{"kind": "Status", "code": 403}\n', id="json"),
    pytest.param("\x00\xff\xfe binary\n", id="binary"),
    pytest.param('kubelet_http_requests_total{path="x",server_type="readonly" 3\n', id="unclosed-labels"),
    pytest.param('kubelet_http_requests_total{path="x",server_type="readonly"} many\n', id="bad-value"),
    pytest.param('kubelet_http_requests_total{path="x",server_type="readonly"} NaN\n', id="nan"),
    pytest.param('kubelet_http_requests_total{path="x",server_type="readonly"} -1\n', id="negative"),
    pytest.param('kubelet_http_requests_total{path="x"} 3\n', id="no-server_type"),
    pytest.param("kubelet_http_requests_total 3\n", id="no-labels"),
]


@pytest.mark.parametrize("text", BAD_TEXT)
def test_garbage_is_a_format_error(text: str) -> None:
    with pytest.raises(MetricsFormatError):
        parse_request_counts(text)
    assert issubclass(MetricsFormatError, ValueError)


@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_format_error(text: str) -> None:
    with contextlib.suppress(MetricsFormatError):
        assert isinstance(parse_request_counts(text), dict)


def test_malformed_family_line_makes_the_reading_an_error() -> None:
    payload = KUBELET_1_21.replace(b'path="pods",server_type="readwrite"} 645292', b'path="pods" 645292')
    reading = read_node_metrics([payload])
    assert reading.error is not None and reading.usage is Usage.INCONCLUSIVE


# --- two readings ----------------------------------------------------------------------------------


def _r(readonly: dict[str, float], readwrite: float = 100.0, present: bool = True, error: str | None = None):
    return NodeReading(readonly, readwrite, present, error)


INCREASE_CASES = [
    # first, second, per_path, restarted
    pytest.param(_r({}), _r({}, 110), {}, False, id="clean-both-times"),
    pytest.param(_r({"stats": 5}), _r({"stats": 5}, 110), {}, False, id="past-use-only"),
    pytest.param(
        _r({"stats": 5}), _r({"stats": 9, "pods": 1}, 110), {"stats": 4, "pods": 1}, False, id="growing"
    ),
    pytest.param(_r({"stats": 5}), _r({"stats": 2}, 110), {"stats": 2}, True, id="readonly-dropped"),
    pytest.param(_r({"stats": 5}), _r({}, 110), {}, True, id="series-vanished"),
    pytest.param(_r({"stats": 5}, 100), _r({"stats": 7}, 3), {"stats": 7}, True, id="readwrite-dropped"),
]


@pytest.mark.parametrize(("first", "second", "per_path", "restarted"), INCREASE_CASES)
def test_increase(first: NodeReading, second: NodeReading, per_path: dict, restarted: bool) -> None:
    result = increase(first, second)
    assert result.error is None
    assert result.per_path == per_path and result.restarted is restarted
    assert result.in_use is bool(per_path)


@pytest.mark.parametrize(
    ("first", "second"),
    [(_r({}, present=False), _r({})), (_r({}), _r({"pods": 3}, error="payload cut off"))],
    ids=["no-family", "error"],
)
def test_increase_from_inconclusive_readings_is_an_error(first: NodeReading, second: NodeReading) -> None:
    result = increase(first, second)
    assert result.error is not None and not result.in_use


# --- the Autopilot probe's logs ----------------------------------------------------------------------

_RW = 'kubelet_http_requests_total{{long_running="false",method="GET",path="metrics",server_type="readwrite"}} {}'
_RO = (
    'kubelet_http_requests_total{{long_running="false",method="GET",path="stats",server_type="readonly"}} {}'
)
_HELP = (
    "# HELP kubelet_http_requests_total [ALPHA] Number of the http requests received since the server started"
)
_TYPE = "# TYPE kubelet_http_requests_total counter"


def _round(pod: str, rw: int, ro: int | None) -> list[str]:
    lines = [_HELP, _TYPE, _RW.format(rw)] + ([_RO.format(ro)] if ro is not None else [])
    return [f"[pod/{pod}/metrics-printer] {line}" for line in lines]


def test_probe_logs_latest_round_per_pod() -> None:
    lines = [
        *_round("printer-a", 10, None),
        "[pod/printer-b/metrics-printer] curl: (7) Failed to connect to 10.0.0.2 port 10250",
        *_round("printer-b", 20, 5),
        *_round("printer-a", 11, 1),  # a's newest round shows readonly use
        *_round("printer-b", 21, None),  # b's kubelet restarted: its readonly series is gone
        "",
        "[pod/printer-a/metrics-printer] sh: sleep: not found",
    ]
    log = parse_probe_log_lines(lines)
    assert log.garbage_lines == 2
    assert log.readings["printer-a"] == NodeReading({"stats": 1.0}, 11.0, True)
    assert log.readings["printer-b"] == NodeReading({}, 21.0, True)
    assert log.readings["printer-a"].usage is Usage.READONLY_SEEN


def test_probe_logs_without_prefix_with_timestamps_and_crlf() -> None:
    lines = [
        f"2024-05-01T10:00:00.000000000Z {_RW.format(1)}\r\n",
        f"2024-05-01T10:00:20.000000000Z {_RW.format(2)}\r\n",
        f"2024-05-01T10:00:20.000000000Z {_RO.format(4)}\r\n",
    ]
    log = parse_probe_log_lines(lines)
    assert log.garbage_lines == 0
    assert log.readings == {"": NodeReading({"stats": 4.0}, 2.0, True)}  # latest value per series


def test_probe_logs_malformed_and_empty_rounds() -> None:
    lines = [
        *_round("printer-c", 5, None),
        f"[pod/printer-c/metrics-printer] {_RO.format('oops')}",
        "[pod/printer-d/metrics-printer] <html>403 Forbidden</html>",
    ]
    log = parse_probe_log_lines(lines)
    assert log.garbage_lines == 2
    assert log.readings["printer-c"] == NodeReading({}, 5.0, True)
    assert log.readings["printer-d"].family_present is False
    assert log.readings["printer-d"].usage is Usage.INCONCLUSIVE
