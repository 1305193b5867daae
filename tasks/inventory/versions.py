"""GKE version strings, compared numerically.

The read-only port setting exists only from GKE 1.26.4-gke.500, for the control plane and for each node
pool being changed (FACTS.md). Versions must be compared part by part as numbers: as strings,
"1.29.1-gke.1589018" < "1.29.1-gke.500". Version text comes from the API (`currentMasterVersion`,
`NodePool.version`), which may be empty or "-" when unknown, so parsing never raises: it returns None
for text it does not understand and callers treat that as "cannot tell", never as "new enough".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["MIN_PORT_VERSION", "GkeVersion", "parse_version", "supports_port_setting"]

# Digits are ASCII only (\d would accept other scripts' digits); 1-9 digits keeps ints small.
_VERSION_RE = re.compile(
    r"v?(?P<major>[0-9]{1,9})"
    r"(?:\.(?P<minor>[0-9]{1,9})"
    r"(?:\.(?P<patch>[0-9]{1,9})"
    r"(?:-gke\.(?P<gke>[0-9]{1,9}))?)?)?",
    re.ASCII,
)
_UNKNOWN_TEXTS = frozenset({"", "-"})


@dataclass(frozen=True, order=True)
class GkeVersion:
    """A GKE version as a tuple of numbers: (major, minor, patch, gke build), possibly shorter.

    A shorter tuple compares lower than any longer tuple it is a prefix of, so a missing part counts
    as the lowest value: "1.27" < "1.27.0" < "1.27.0-gke.0". The empty tuple is the unknown version
    ("-" or ""), lower than every known one.
    """

    parts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.parts) > 4 or any(not isinstance(p, int) or p < 0 for p in self.parts):
            raise ValueError(f"a GKE version has up to 4 non-negative parts, got {self.parts!r}")

    @property
    def is_unknown(self) -> bool:
        """True for the API's "-" or "": the version is not known, so nothing can be decided from it."""
        return not self.parts

    @property
    def major(self) -> int | None:
        return self.parts[0] if len(self.parts) > 0 else None

    @property
    def minor(self) -> int | None:
        return self.parts[1] if len(self.parts) > 1 else None

    @property
    def patch(self) -> int | None:
        return self.parts[2] if len(self.parts) > 2 else None

    @property
    def gke(self) -> int | None:
        return self.parts[3] if len(self.parts) > 3 else None

    def __str__(self) -> str:
        if not self.parts:
            return "-"
        text = ".".join(str(p) for p in self.parts[:3])
        if len(self.parts) == 4:
            text += f"-gke.{self.parts[3]}"
        return text


def parse_version(text: object) -> GkeVersion | None:
    """Parse `1.27.3-gke.1700`, `v1.28.2-gke.100`, `1.27`, `1.27.3`, `-` or `` (unknown).

    Returns None for anything else ("latest", "1.x.3", "1.27.3-gke.abc", None, non-strings): the input
    comes from the API or from users, and a bad value must become a finding, not a crash. A fleet has few
    distinct version strings, so answers are cached (GkeVersion is immutable).
    """
    if not isinstance(text, str):
        return None
    return _parse_text(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> GkeVersion | None:
    text = text.strip()
    if text in _UNKNOWN_TEXTS:
        return GkeVersion(())
    match = _VERSION_RE.fullmatch(text)
    if match is None:
        return None
    groups = (match["major"], match["minor"], match["patch"], match["gke"])
    return GkeVersion(tuple(int(g) for g in groups if g is not None))


MIN_PORT_VERSION: GkeVersion = GkeVersion((1, 26, 4, 500))
"""The first GKE version that accepts `insecure_kubelet_readonly_port_enabled` (seed, "要件")."""


def supports_port_setting(version: str | GkeVersion | None) -> bool:
    """True when `version` is known and at least 1.26.4-gke.500.

    Unknown and malformed versions return False: sending the setting to a control plane or pool that
    is too old fails, so "cannot tell" must not count as "new enough". A partial version such as
    "1.26.4" is also False, because some 1.26.4 builds are older than the minimum.
    """
    parsed = version if isinstance(version, GkeVersion) else parse_version(version)
    return parsed is not None and not parsed.is_unknown and parsed >= MIN_PORT_VERSION
