"""The version gate's cached checks give the answers of the plain ones."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.inventory.eligibility import (
    SAFE_PATH,
    SAFE_POOL,
    _safe_location,
    _safe_name,
    _safe_project,
    _too_old,
)
from tasks.inventory.versions import MIN_PORT_VERSION, parse_version

PART = st.text(alphabet="abz09-/_.A \n", max_size=8)


@settings(max_examples=2000)
@given(
    project=st.one_of(PART, PART.map(lambda t: "ab" + t + "1")),
    location=st.one_of(PART, PART.map(lambda t: "us-" + t)),
    name=st.one_of(PART, PART.map(lambda t: "c" + t)),
)
def test_safe_path_by_parts_is_the_whole_path_pattern(project: str, location: str, name: str) -> None:
    whole = SAFE_PATH.fullmatch(f"projects/{project}/locations/{location}/clusters/{name}") is not None
    assert (_safe_project(project) and _safe_location(location) and _safe_name(name)) == whole
    assert _safe_name(name) == (SAFE_POOL.fullmatch(name) is not None)


@given(
    st.one_of(
        st.sampled_from(["1.26.4-gke.500", "1.26.4-gke.499", "1.30.5-gke.1014001", "-", "", "1.x"]), PART
    )
)
def test_too_old_cached_answer(version: str) -> None:
    parsed = parse_version(version)
    can = parsed is not None and not parsed.is_unknown and parsed >= MIN_PORT_VERSION
    assert (_too_old(version) is None) == can
    assert _too_old(version) == _too_old(version)
