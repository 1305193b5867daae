"""GKE version parsing and the 1.26.4-gke.500 gate: tables for known strings, properties for the order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.inventory.versions import MIN_PORT_VERSION, GkeVersion, parse_version, supports_port_setting

PARSED = [
    ("1.27.3-gke.1700", (1, 27, 3, 1700)),
    ("1.30.5-gke.1014001", (1, 30, 5, 1014001)),
    ("1.29.1-gke.1589018", (1, 29, 1, 1589018)),
    ("v1.28.2-gke.100", (1, 28, 2, 100)),
    ("1.26.4-gke.500", (1, 26, 4, 500)),
    ("1.27", (1, 27)),
    ("1.27.3", (1, 27, 3)),
    (" 1.27.3-gke.1700 ", (1, 27, 3, 1700)),
    ("-", ()),
    ("", ()),
]
MALFORMED = [
    "latest",
    "1.x.3",
    "1.27.3-gke.abc",
    "1.27.3-gke.",
    "1.27.3-gke.1700.1",
    "1.27.3-eks.5",
    "1..3",
    ".1.27",
    "1.27-gke.5",
    "v",
    "--",
    "1.27\n.3",  # whitespace inside the value (around it is stripped)
    "1.٢٧.3",  # non-ASCII digits
    "1.27.3-gke.1700 extra",
    None,
    1.27,
    b"1.27.3",
]
GATE = [
    ("1.26.4-gke.500", True),
    ("1.26.4-gke.501", True),
    ("1.26.4-gke.499", False),
    ("1.26.5-gke.1", True),
    ("1.26.3-gke.99999", False),
    ("1.27", True),  # every 1.27 build is newer than the minimum
    ("1.26.4", False),  # some 1.26.4 builds are older
    ("1.26", False),
    ("1.29.1-gke.1589018", True),
    ("1.25.16-gke.1000000", False),
    ("2.0", True),
    ("-", False),
    ("", False),
    ("latest", False),
    (None, False),
]


@pytest.mark.parametrize(("text", "parts"), PARSED)
def test_parse_known_formats(text: str, parts: tuple[int, ...]) -> None:
    assert parse_version(text) == GkeVersion(parts)


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_none(text: object) -> None:
    assert parse_version(text) is None


@pytest.mark.parametrize(("text", "expected"), GATE)
def test_supports_port_setting(text: str | None, expected: bool) -> None:
    assert supports_port_setting(text) is expected


def test_numeric_not_lexical_order() -> None:
    # As strings "1589018" < "500"; as numbers it is far newer.
    assert parse_version("1.29.1-gke.1589018") > parse_version("1.29.1-gke.500")
    assert parse_version("1.10.0") > parse_version("1.9.9-gke.9999")


def test_missing_parts_are_lowest_and_unknown_is_below_all() -> None:
    order = ["-", "1", "1.27", "1.27.0", "1.27.0-gke.0", "1.27.0-gke.1", "1.27.1"]
    parsed = [parse_version(t) for t in order]
    assert parsed == sorted(parsed)
    assert parse_version("-").is_unknown and not parse_version("1.27").is_unknown


def test_accessors_and_str() -> None:
    v = parse_version("v1.28.2-gke.100")
    assert (v.major, v.minor, v.patch, v.gke) == (1, 28, 2, 100)
    assert str(v) == "1.28.2-gke.100"
    short = parse_version("1.27")
    assert (short.patch, short.gke) == (None, None)
    assert str(parse_version("")) == "-"
    assert parse_version("1.26.4-gke.500") == MIN_PORT_VERSION
    assert supports_port_setting(MIN_PORT_VERSION)


def test_invalid_parts_rejected_at_construction() -> None:
    with pytest.raises(ValueError):
        GkeVersion((1, 2, 3, 4, 5))
    with pytest.raises(ValueError):
        GkeVersion((1, -2))


parts_st = st.lists(st.integers(min_value=0, max_value=10**9 - 1), min_size=0, max_size=4).map(tuple)


@given(parts_st, parts_st)
def test_order_matches_tuple_order(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    va, vb = GkeVersion(a), GkeVersion(b)
    assert (va < vb) == (a < b)
    assert (va == vb) == (a == b)
    assert (va <= vb) == (a <= b)


@given(parts_st)
def test_str_round_trip(parts: tuple[int, ...]) -> None:
    v = GkeVersion(parts)
    assert parse_version(str(v)) == v


@given(st.tuples(*[st.integers(min_value=0, max_value=2000)] * 3), st.integers(min_value=0, max_value=10**7))
def test_gate_matches_tuple_comparison(triple: tuple[int, int, int], gke: int) -> None:
    parts = (*triple, gke)
    text = "{}.{}.{}-gke.{}".format(*parts)
    assert supports_port_setting(text) == (parts >= (1, 26, 4, 500))


# Near-miss text built from the characters versions are made of, plus anything at all.
near_miss = st.text(alphabet="0123456789.-gkev x", max_size=30)


@given(st.one_of(near_miss, st.text(max_size=40)))
def test_never_raises(text: str) -> None:
    parsed = parse_version(text)
    assert parsed is None or isinstance(parsed, GkeVersion)
    assert isinstance(supports_port_setting(text), bool)
