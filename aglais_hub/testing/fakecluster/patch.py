"""The three patch types clients send: JSON merge, strategic merge, JSON patch (pure)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from .errors import ApiError

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

# List fields merged by key in a strategic merge patch (as in the Kubernetes types).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "finalizers": None,  # a set of strings
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes, anything else (lists too) replaces."""
    return _merge(target, patch, "", {})


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Merge patch, except that known lists merge item by item on their merge key."""
    return _merge(target, patch, field, MERGE_KEYS)


def _merge_list(target: list, patch: list, key: str | None, keys: dict) -> list:
    if key is None:
        return list(dict.fromkeys([*target, *patch]))
    merged = [copy.deepcopy(item) for item in target]
    index = {item.get(key): i for i, item in enumerate(merged) if isinstance(item, dict)}
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "delete":
            merged = [m for m in merged if m.get(key) != item.get(key)]
            index = {m.get(key): i for i, m in enumerate(merged)}
        elif item.get(key) in index:
            i = index[item.get(key)]
            merged[i] = _merge(merged[i], item, "", keys)
        else:
            merged.append(copy.deepcopy(item))
            index[item.get(key)] = len(merged) - 1
    return merged


def _merge(target: Any, patch: Any, field: str, keys: dict) -> Any:
    if isinstance(patch, list) and isinstance(target, list) and field in keys:
        return _merge_list(target, patch, keys[field], keys)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value, key, keys)
    return result


def apply_patch(content_type: str, target: dict, patch: Any) -> dict:
    """The object after applying ``patch`` sent with ``content_type``."""
    content_type = content_type.split(";")[0].strip()
    if content_type == MERGE:
        return merge_patch(target, patch)
    if content_type == STRATEGIC:
        return strategic_merge_patch(target, patch)
    if content_type == JSON_PATCH:
        try:
            return jsonpatch.apply_patch(target, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise ApiError(422, "Invalid", f"the server rejected our request: {e}") from e
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format: {content_type}",
    )
