"""Label and field selectors: parsing (`KubeError` 400 when malformed) and matching."""

from __future__ import annotations

import re
from typing import Any

from gkesim.kubeapi import KubeError

_SEL_RE = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[^\s,=!()]+)"
    r"|(?P<key>[^\s,=!()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<val>[^\s,=!()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?)\s*(?:,|$)"
)


def parse_label_selector(text: str | None) -> list[tuple[str, str, Any]]:
    """`a=b,c!=d,e,!f,g in (x,y),h notin (z)` -> requirements; raises KubeError 400 when malformed."""
    reqs: list[tuple[str, str, Any]] = []
    if not text:
        return reqs
    pos = 0
    while pos < len(text):
        m = _SEL_RE.match(text, pos)
        if not m or m.end() == pos:
            raise KubeError(400, f"unable to parse requirement: found '{text[pos:]}', expected: identifier")
        pos = m.end()
        if m.group("nkey"):
            reqs.append((m.group("nkey"), "!", None))
        elif m.group("op"):
            op = "!=" if m.group("op") == "!=" else "="
            reqs.append((m.group("key"), op, m.group("val")))
        elif m.group("setop"):
            values = {v.strip() for v in m.group("set").split(",") if v.strip()}
            reqs.append((m.group("key"), m.group("setop"), values))
        else:
            reqs.append((m.group("key"), "exists", None))
    return reqs


def labels_match(labels: dict[str, str], reqs: list[tuple[str, str, Any]]) -> bool:
    for key, op, val in reqs:
        have = labels.get(key)
        if (
            (op == "=" and have != val)
            or (op == "!=" and have == val)
            or (op == "exists" and key not in labels)
            or (op == "!" and key in labels)
            or (op == "in" and have not in val)
            or (op == "notin" and have in val)
        ):
            return False
    return True


FIELD_SELECTORS = {
    "pods": (
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "nodes": ("metadata.name", "spec.unschedulable"),
}


def parse_field_selector(resource: str, text: str | None) -> list[tuple[str, str, str]]:
    reqs: list[tuple[str, str, str]] = []
    allowed = FIELD_SELECTORS.get(resource, ("metadata.name", "metadata.namespace"))
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise KubeError(400, f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, val = m.group(1).strip(), m.group(2), m.group(3).strip()
        if key not in allowed:
            raise KubeError(400, f"field label not supported: {key}")
        reqs.append((key, "!=" if op == "!=" else "=", val))
    return reqs


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def fields_match(obj: dict[str, Any], reqs: list[tuple[str, str, str]]) -> bool:
    return all((field_value(obj, k) == v) == (op == "=") for k, op, v in reqs)
