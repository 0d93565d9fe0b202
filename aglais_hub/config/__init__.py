"""The values model: one YAML file validated by one JSON Schema.

`load_values(path)` reads a values file, fills the schema's defaults and returns a
plain dict, or raises `ValuesError` listing every problem with its key path, e.g.
``auth.adminGroups: expected a list of strings, got 'admins'``.
The same schema is the Helm chart's ``values.schema.json``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .. import flavours

__all__ = ["Problem", "ValuesError", "apply_defaults", "load_schema", "load_values", "validate"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a values file, located by its dotted key path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(top level)'}: {self.message}"


class ValuesError(ValueError):
    """A values file that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


# Marks, in values.schema.yaml, an enum of flavour names, so that adding a flavour is
# one registration (aglais_hub.flavours), not an edit here too: ``{first: [...]}`` lists
# values before the flavours, ``sorted: true`` orders the flavours by name.
FLAVOUR_ENUM = "x-enum-flavours"


def _with_flavour_enums(node: Any, registered: tuple[str, ...]) -> Any:
    """``node`` with each FLAVOUR_ENUM mark replaced, in its place, by the enum it means."""
    if isinstance(node, list):
        return [_with_flavour_enums(item, registered) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == FLAVOUR_ENUM:
            names = sorted(registered) if value.get("sorted") else list(registered)
            out["enum"] = [*value.get("first", []), *names]
        else:
            out[key] = _with_flavour_enums(value, registered)
    return out


@functools.cache
def _schema(registered: tuple[str, ...]) -> dict:
    text = resources.files(__package__).joinpath("values.schema.yaml").read_text()
    return _with_flavour_enums(yaml.safe_load(text), registered)


def load_schema() -> dict:
    """The values JSON Schema, its flavour enums those of the registered flavours (a
    fresh copy is not needed: callers must not mutate it)."""
    return _schema(flavours.names())


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        target = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        # Keywords beside $ref (description, default) override the target's.
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def apply_defaults(values: dict, schema: dict | None = None) -> dict:
    """Return a copy of ``values`` with every schema default filled in (pure)."""
    root = load_schema() if schema is None else schema

    def fill(value: Any, node: dict) -> Any:
        node = _resolve(node, root)
        if not isinstance(value, dict) or node.get("type") != "object":
            return value
        out = dict(value)
        for key, sub in node.get("properties", {}).items():
            sub = _resolve(sub, root)
            if key not in out:
                if "default" in sub:
                    out[key] = copy.deepcopy(sub["default"])
                elif (
                    sub.get("type") == "object" and "properties" in sub and not sub.get("required")
                ):
                    out[key] = {}
            if key in out:
                out[key] = fill(out[key], sub)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key in set(out) - set(node.get("properties", {})):
                out[key] = fill(out[key], extra)
        return out

    return fill(copy.deepcopy(values), root)


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _describe(schema: dict, root: dict) -> str:
    schema = _resolve(schema, root)
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict):
        item = _resolve(schema["items"], root).get("type")
        if item in _TYPE_WORDS:
            return f"a list of {item}s" if item != "boolean" else "a list of booleans"
    if isinstance(kind, list):
        return " or ".join(_TYPE_WORDS.get(k, k) for k in kind)
    return _TYPE_WORDS.get(kind, str(kind))


def _key_path(parts: Any) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in parts).replace(
        ".[", "["
    )


def _schema_problem(error: jsonschema.ValidationError, root: dict) -> list[Problem]:
    path = list(error.absolute_path)
    where = _key_path(path)
    v = error.validator
    if v == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(known))
        problems = []
        for key in unknown:
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            choices = f"; known keys: {', '.join(known)}" if known and not hint else ""
            problems.append(Problem(_key_path([*path, key]), f"unknown key{suggestion}{choices}"))
        return problems
    if v == "required":
        missing = error.message.split("'")[1]
        return [Problem(_key_path([*path, missing]), "required key is missing")]
    if v == "type":
        expected = _describe(error.schema, root)
        return [Problem(where, f"expected {expected}, got {error.instance!r}")]
    if v == "enum":
        choices = ", ".join(repr(c) for c in error.validator_value)
        return [Problem(where, f"must be one of {choices}, got {error.instance!r}")]
    if v == "pattern":
        hint = (
            error.schema.get("x-hint")
            or error.schema.get("description")
            or f"must match {error.validator_value}"
        )
        return [Problem(where, f"{error.instance!r} is not valid: {hint}")]
    if v in ("minimum", "maximum"):
        word = "at least" if v == "minimum" else "at most"
        return [Problem(where, f"must be {word} {error.validator_value}, got {error.instance!r}")]
    if v == "minLength":
        return [Problem(where, "must not be empty")]
    if v == "minItems":
        hint = error.schema.get("x-hint") or f"needs at least {error.validator_value} item(s)"
        return [Problem(where, f"must not be empty: {hint}")]
    if v == "minProperties":
        return [Problem(where, f"needs at least {error.validator_value} entry")]
    return [Problem(where, error.message)]


def _catalogue_problems(spawner: dict) -> list[Problem]:
    """A pod sees the catalogues only where a data volume is mounted."""
    path = spawner.get("catalogues") or ""
    if spawner.get("kind") != "zeppelin" or not path:
        return []
    volumes = (spawner.get("kubernetes") or {}).get("dataVolumes") or []
    mounts = [v["mountPath"].rstrip("/") for v in volumes if isinstance(v, dict)]
    if any(path == m or path.startswith(m + "/") for m in mounts if m):
        return []
    listing = ", ".join(mounts) or "none is set"
    return [
        Problem(
            "spawner.catalogues",
            f"{path!r} is not at or under a mountPath of spawner.kubernetes.dataVolumes "
            f"({listing}): notebook pods would not see it",
        )
    ]


# the volume types each Pod Security level admits (restricted: an allow-list; baseline
# refuses only hostPath), so a refused data volume is named here, not at the first spawn
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _data_volume_problems(kubernetes: dict) -> list[Problem]:
    level = kubernetes.get("podSecurity")
    problems = []
    for index, volume in enumerate(kubernetes.get("dataVolumes") or []):
        kinds = set((volume.get("source") or {}) if isinstance(volume, dict) else {})
        refused = {"restricted": kinds - _RESTRICTED_VOLUMES, "baseline": kinds & {"hostPath"}}
        for kind in sorted(refused.get(level, set())):
            problems.append(
                Problem(
                    f"spawner.kubernetes.dataVolumes[{index}].source",
                    f"a {kind} volume is refused by Pod Security {level!r} "
                    "(spawner.kubernetes.podSecurity): use a csi driver (e.g. nfs.csi.k8s.io) "
                    "or a persistentVolumeClaim",
                )
            )
    return problems


def _semantic_problems(values: dict) -> list[Problem]:
    """Cross-key rules a JSON Schema cannot say: names that must refer to a tier, the
    catalogues inside a data volume, data volumes the namespaces' Pod Security admits."""
    spawner = values.get("spawner") or {}
    problems = _catalogue_problems(spawner) + _data_volume_problems(spawner.get("kubernetes") or {})
    size = (values.get("benchmark") or {}).get("size")
    sizes = values.get("sizes") or {}
    if size and size not in sizes:
        offered = ", ".join(sorted(sizes)) or "none is set"
        problems.append(Problem("benchmark.size", f"unknown size {size!r} (sizes: {offered})"))
    tiers = values.get("tiers") or {}
    if not isinstance(tiers, dict) or not tiers:
        return problems
    known = ", ".join(sorted(tiers))
    auth = values.get("auth") or {}

    def check(path: str, name: Any) -> None:
        if isinstance(name, str) and name not in tiers:
            problems.append(Problem(path, f"unknown tier {name!r} (tiers: {known})"))

    check("auth.defaultTier", auth.get("defaultTier"))
    for group, tier in (auth.get("tierGroups") or {}).items():
        check(f"auth.tierGroups.{group}", tier)
    for name, size in (values.get("sizes") or {}).items():
        if isinstance(size, dict):
            check(f"sizes.{name}.minTier", size.get("minTier"))
    ranks: dict[int, str] = {}
    for name, tier in tiers.items():
        rank = tier.get("rank") if isinstance(tier, dict) else None
        if isinstance(rank, int) and rank in ranks:
            problems.append(
                Problem(
                    f"tiers.{name}.rank", f"rank {rank} is already used by tier {ranks[rank]!r}"
                )
            )
        elif isinstance(rank, int):
            ranks[rank] = name
    return problems


def validate(values: Any) -> list[Problem]:
    """Every problem of a values document (after defaults), in key-path order."""
    schema = load_schema()
    if not isinstance(values, dict):
        return [Problem("", f"expected a mapping of keys, got {values!r}")]
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[Problem] = []
    for error in validator.iter_errors(values):
        problems.extend(_schema_problem(error, schema))
    if not problems:
        problems = _semantic_problems(values)
    return sorted(set(problems), key=lambda p: (p.path, p.message))


def load_values(path: str | Path) -> dict:
    """Read, default-fill and validate a values file; raise ValuesError on any problem."""
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValuesError(source, [Problem("", "file not found")]) from None
    except yaml.YAMLError as e:
        raise ValuesError(source, [Problem("", f"not valid YAML: {e}")]) from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValuesError(source, [Problem("", f"expected a mapping of keys, got {raw!r}")])
    values = apply_defaults(raw)
    problems = validate(values)
    if problems:
        raise ValuesError(source, problems)
    return values


def schema_json() -> str:
    """The schema as JSON text (what the Helm chart ships as values.schema.json)."""
    return json.dumps(load_schema(), indent=2, sort_keys=False) + "\n"
