"""Pure helpers that turn identity-provider claims into hub usernames and groups."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_EDGES = "-._"
MAX_USERNAME_LENGTH = 63


def claim_at(user_info: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted claim path (``realm_access.roles``), or None if absent."""
    value: Any = user_info
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def safe_username(raw: Any) -> str:
    """A hub username made from a claim value, or "" when nothing usable remains.

    Lower-cased, accents folded to ASCII, every run of characters outside
    ``[a-z0-9._-]`` replaced by one '-', no leading or trailing punctuation,
    at most 63 characters (so it also fits a Kubernetes name).
    """
    if not isinstance(raw, str):
        return ""
    folded = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    name = _UNSAFE.sub("-", folded.strip().lower()).strip(_EDGES)
    return name[:MAX_USERNAME_LENGTH].rstrip(_EDGES)


def claim_groups(user_info: Mapping[str, Any], path: str) -> set[str]:
    """The groups in a claim: a list of strings, or one string; anything else is no group."""
    value = claim_at(user_info, path)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return set()
    return {g for g in value if isinstance(g, str) and g}
