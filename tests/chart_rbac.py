"""What the hub's ServiceAccount must be allowed to do, derived from the spawner itself:
the objects a spawn makes (`aglais-hub render-pod`) and the Kubernetes client calls in
ZeppelinSpawner and in the KubeSpawner methods it runs. And what a set of RBAC rules
grants, to compare the two."""

from __future__ import annotations

import inspect
import re
from collections import defaultdict

from kubespawner import KubeSpawner

from spawners.zeppelin.apply import KIND_API
from spawners.zeppelin.spawner import ZeppelinSpawner

Right = tuple[str, str]  # (apiGroup, resource)
CLIENT_VERBS = {
    "create": "create",
    "read": "get",
    "replace": "update",
    "patch": "patch",
    "delete": "delete",
    "list": "list",
}
# e.g. self.api.patch_namespaced_config_map(...), api.list_event_for_all_namespaces
CALL = re.compile(
    r"\bapi\.(create|read|replace|patch|delete|list)_(?:namespaced_)?([a-z_]+?)"
    r"(?:_for_all_namespaces)?\b"
)
# ZeppelinSpawner._apply: getattr(api, f"create_{suffix}") over the kinds of apply.KIND_API
DYNAMIC = re.compile(r'getattr\(api, f"(\w+)_\{suffix\}"\)')
SKIPPED = re.compile(r'if kind != "(\w+)":\s+await getattr\(api, f"(\w+)_\{suffix\}"\)')
# KubeSpawner methods ZeppelinSpawner runs (delete_forever is not: delete_pvc is off).
KUBESPAWNER_METHODS = (
    "_start",
    "stop",
    "poll",
    "_make_create_pod_request",
    "_make_create_pvc_request",
    "_check_pvc_exists",
    "_make_delete_pod_request",
)
# KubeSpawner's reflectors list and watch these in every namespace (enable_user_namespaces).
REFLECTED = ("pods", "events")


def plural(singular: str) -> str:
    word = singular.replace("_", "").lower()
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def _sources() -> list[str]:
    own = [inspect.getsource(ZeppelinSpawner)]
    inherited = [
        inspect.getsource(getattr(KubeSpawner, name))
        for name in KUBESPAWNER_METHODS
        if name not in ZeppelinSpawner.__dict__
    ]
    return own + inherited


def needed_rights(objects: list[dict]) -> dict[Right, set[str]]:
    """Verbs per (apiGroup, resource) the hub needs to run the spawns in ``objects``."""
    groups = {plural(o["kind"]): group_of(o["apiVersion"]) for o in objects}
    groups.update({"pods": "", "events": ""})
    need: dict[Right, set[str]] = defaultdict(set)

    def add(resource: str, verb: str) -> None:
        need[(groups[resource], resource)].add(verb)

    for obj in objects:  # every object of a spawn is created by the hub
        add(plural(obj["kind"]), "create")
    for source in _sources():
        for verb, singular in CALL.findall(source):
            if plural(singular) in groups:
                add(plural(singular), CLIENT_VERBS[verb])
        skipped = set(SKIPPED.findall(source))
        for verb in DYNAMIC.findall(source):
            for kind in KIND_API:
                if (kind, verb) not in skipped:
                    add(plural(kind), CLIENT_VERBS[verb])
    for resource in REFLECTED:
        add(resource, "list")
        add(resource, "watch")
    # Kubernetes creates a Role, or a RoleBinding to it, only for someone who holds every
    # right the Role grants (unless they have escalate/bind, which the chart does not give).
    for role in (o for o in objects if o["kind"] == "Role"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    need[(group, resource)].update(rule["verbs"])
    return dict(need)


def granted(rules: list[dict]) -> dict[Right, set[str]]:
    """Verbs per (apiGroup, resource) that rules grant for any object name."""
    have: dict[Right, set[str]] = defaultdict(set)
    for rule in rules:
        if rule.get("resourceNames"):
            continue  # limited to named objects: grants nothing for new ones
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                have[(group, resource)].update(rule["verbs"])
    return dict(have)
