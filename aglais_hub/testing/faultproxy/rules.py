"""Which Kubernetes request this is, and the fault rules that may answer it (ours).

``classify`` reads a request as the API server's request-info resolver does: the verb
(get, list, watch, create, update, patch, delete, deletecollection) from the method, the
path and the ``watch`` parameter; the resource (plural), subresource, namespace and name
from the path (``/api/v1/...`` and ``/apis/<group>/<version>/...``; as there, a Namespace
object is in the namespace of its own name, as RBAC sees it). Paths that are not
resources (``/version``, ``/readyz``, ``/openapi/...``) classify as None and no rule
matches them.

A ``Rule`` answers a matching request with a Kubernetes ``Status`` (``status``, e.g. 500,
or 429 with ``retry_after``) and/or holds it ``delay`` seconds before it goes on; it fires
``count`` times (None: until removed). Rules are tried in the order they were added and
the first one with firings left takes the request.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qs

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# what the API server calls its failures (metav1.StatusReason), by code
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
# "namespaces/<name>/<these>" are subresources of the Namespace, not namespaced resources
NAMESPACE_SUBRESOURCES = ("status", "finalize")


class RuleError(ValueError):
    """A rule that cannot be: the message names the field and why."""


@dataclass(frozen=True)
class RequestInfo:
    verb: str
    resource: str  # "pods", or "pods/status" with a subresource
    namespace: str | None
    name: str | None
    group: str  # "" for the core group


def classify(method: str, path: str, query: str = "") -> RequestInfo | None:
    """The Kubernetes verb and resource of one request, or None for a non-resource path."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, parts = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, parts = parts[1], parts[3:]
    else:
        return None
    watch = False
    if parts[:1] == ["watch"]:  # the old /watch/ path prefix
        watch, parts = True, parts[1:]
    namespace = None
    if parts[:1] == ["namespaces"] and len(parts) >= 2:
        namespace = parts[1]
        if len(parts) >= 3 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    if not parts:
        return None
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else None
    if len(parts) >= 3:
        resource = f"{resource}/{parts[2]}"
    params = parse_qs(query)
    watch = watch or params.get("watch", ["false"])[-1].lower() in ("true", "1")
    method = method.upper()
    if method in ("GET", "HEAD"):
        verb = "watch" if watch else ("get" if name else "list")
    else:
        verb = {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method, method.lower())
    return RequestInfo(verb, resource, namespace, name, group)


_ids = itertools.count(1)


@dataclass
class Rule:
    """One fault: which requests (``verb``/``resource``, "*" for any; ``namespace`` None
    for any) and what happens to them."""

    verb: str
    resource: str
    namespace: str | None = None
    status: int | None = None
    count: int | None = 1
    retry_after: int | None = None
    delay: float | None = None
    message: str | None = None
    id: str = field(default_factory=lambda: f"f{next(_ids)}")
    fired: int = 0

    FIELDS = ("verb", "resource", "namespace", "status", "count", "retry_after", "delay", "message")

    @classmethod
    def parse(cls, data: object) -> Rule:
        """A rule from the control API's JSON, or RuleError saying what is wrong."""
        if not isinstance(data, dict):
            raise RuleError("a rule is a JSON object")
        unknown = sorted(set(data) - set(cls.FIELDS))
        if unknown:
            raise RuleError(
                f"unknown field(s): {', '.join(unknown)}; known: {', '.join(cls.FIELDS)}"
            )
        verb, resource = data.get("verb"), data.get("resource")
        if verb not in (*VERBS, "*"):
            raise RuleError(f"verb: {verb!r} is not one of {', '.join(VERBS)} or '*'")
        if (
            not isinstance(resource, str)
            or not resource
            or resource.count("/") > 1
            or not all(resource.split("/"))
        ):
            raise RuleError(
                f"resource: {resource!r} is not a plural resource such as 'pods', "
                "'pods/status' or '*'"
            )
        namespace = data.get("namespace")
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise RuleError("namespace: a namespace name, or absent for any")
        status, delay = data.get("status"), data.get("delay")
        if status is not None and (type(status) is not int or not 400 <= status <= 599):
            raise RuleError(f"status: {status!r} is not an HTTP error code (400-599)")
        if delay is not None and (type(delay) not in (int, float) or not 0 < delay <= 600):
            raise RuleError(f"delay: {delay!r} is not a number of seconds in (0, 600]")
        if status is None and delay is None:
            raise RuleError("a rule needs a status (answer it), a delay (hold it), or both")
        count = data.get("count", 1)
        if count is not None and (type(count) is not int or count < 1):
            raise RuleError(f"count: {count!r} is not a positive integer (or null: until removed)")
        retry_after = data.get("retry_after")
        if retry_after is not None:
            if type(retry_after) is not int or retry_after < 0:
                raise RuleError(f"retry_after: {retry_after!r} is not a whole number of seconds")
            if status is None:
                raise RuleError("retry_after needs a status (429 or 503, as a server sends it)")
        message = data.get("message")
        if message is not None and not isinstance(message, str):
            raise RuleError("message: a string")
        return cls(
            verb,
            resource,
            namespace,
            status,
            count,
            retry_after,
            float(delay) if delay is not None else None,
            message,
        )

    def matches(self, request: RequestInfo) -> bool:
        return (
            (self.count is None or self.fired < self.count)
            and self.verb in ("*", request.verb)
            and self.resource in ("*", request.resource)
            and (self.namespace is None or self.namespace == request.namespace)
        )

    def status_body(self, request: RequestInfo) -> dict:
        """The ``Status`` the API server would send for this code."""
        details: dict = {"kind": request.resource.split("/")[0]}
        if request.group:
            details["group"] = request.group
        if request.name:
            details["name"] = request.name
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        message = self.message or (
            f"injected by the aglais fault proxy (rule {self.id}): "
            f"{request.verb} {request.resource}"
        )
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": REASONS.get(self.status, ""),
            "details": details,
            "code": self.status,
        }

    def describe(self) -> dict:
        return asdict(self)


class Rules:
    """The rules in force, in the order added."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def take(self, request: RequestInfo | None) -> Rule | None:
        """The first matching rule with firings left, counted as fired."""
        if request is None:
            return None
        for rule in self.rules:
            if rule.matches(request):
                rule.fired += 1
                return rule
        return None

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [rule for rule in self.rules if rule.id != rule_id]
        return len(self.rules) < before

    def clear(self) -> int:
        count, self.rules = len(self.rules), []
        return count
