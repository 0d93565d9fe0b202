"""Label and field selectors, parsed and matched as the API server does (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ApiError

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_OP = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_OP = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_./-]*)\s*$")


def _split_requirements(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def label_matcher(selector: str | None) -> Matcher:
    """A function telling whether a labels mapping satisfies ``selector``."""
    if not selector:
        return lambda labels: True
    tests: list[Matcher] = []
    for requirement in _split_requirements(selector):
        eq = _EQ_OP.match(requirement)
        if eq:
            key, op, value = eq.groups()
            if op == "!=":
                tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
            continue
        st = _SET_OP.match(requirement)
        if not st:
            raise ApiError.bad_request(f"unable to parse requirement: {requirement!r}")
        negate, key, op, values = st.groups()
        if op:
            choices = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                tests.append(lambda labels, k=key, c=choices: labels.get(k) in c)
            else:
                tests.append(lambda labels, k=key, c=choices: labels.get(k) not in c)
        elif negate:
            tests.append(lambda labels, k=key: k not in labels)
        else:
            tests.append(lambda labels, k=key: k in labels)
    return lambda labels: all(test(labels) for test in tests)


SUPPORTED_FIELDS = {
    "metadata.name": lambda o: o["metadata"].get("name"),
    "metadata.namespace": lambda o: o["metadata"].get("namespace"),
    "status.phase": lambda o: (o.get("status") or {}).get("phase"),
    "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName") or "",
    "involvedObject.name": lambda o: (o.get("involvedObject") or {}).get("name"),
    "involvedObject.namespace": lambda o: (o.get("involvedObject") or {}).get("namespace"),
    "involvedObject.kind": lambda o: (o.get("involvedObject") or {}).get("kind"),
    "involvedObject.uid": lambda o: (o.get("involvedObject") or {}).get("uid"),
    "type": lambda o: o.get("type"),
    "reason": lambda o: o.get("reason"),
}


def field_matcher(selector: str | None) -> Matcher:
    """A function telling whether an object satisfies a field ``selector``."""
    if not selector:
        return lambda obj: True
    tests: list[Matcher] = []
    for requirement in _split_requirements(selector):
        eq = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", requirement)
        if not eq:
            raise ApiError.bad_request(f"invalid field selector: {requirement!r}")
        field, op, value = eq.groups()
        getter = SUPPORTED_FIELDS.get(field)
        if getter is None:
            raise ApiError.bad_request(f'field label not supported: "{field}"')
        if op == "!=":
            tests.append(lambda o, g=getter, v=value: (g(o) or "") != v)
        else:
            tests.append(lambda o, g=getter, v=value: (g(o) or "") == v)
    return lambda obj: all(test(obj) for test in tests)
