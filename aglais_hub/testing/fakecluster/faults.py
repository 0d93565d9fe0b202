"""Fault injection: failing requests, latency, dropped watches (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestFault:
    """Fail the next ``count`` requests that match ``verb`` and ``resource`` ("*" for any)."""

    verb: str
    resource: str
    status: int
    count: int = 1
    retry_after: int | None = None
    namespace: str | None = None
    message: str = "injected fault"
    hits: int = 0

    def matches(self, verb: str, resource: str, namespace: str | None) -> bool:
        return (
            self.hits < self.count
            and self.verb in ("*", verb)
            and self.resource in ("*", resource)
            and (self.namespace is None or self.namespace == namespace)
        )


@dataclass
class Faults:
    """The faults in force; the API server consults it on every request."""

    requests: list[RequestFault] = field(default_factory=list)
    latency: float = 0.0
    latency_verbs: set[str] = field(default_factory=set)

    def fail(
        self,
        verb: str,
        resource: str,
        status: int,
        count: int = 1,
        retry_after: int | None = None,
        namespace: str | None = None,
    ) -> RequestFault:
        fault = RequestFault(verb, resource, status, count, retry_after, namespace)
        self.requests.append(fault)
        return fault

    def take(self, verb: str, resource: str, namespace: str | None) -> RequestFault | None:
        for fault in self.requests:
            if fault.matches(verb, resource, namespace):
                fault.hits += 1
                return fault
        return None

    def delay_for(self, verb: str) -> float:
        if self.latency and (not self.latency_verbs or verb in self.latency_verbs):
            return self.latency
        return 0.0

    def clear(self) -> None:
        self.requests.clear()
        self.latency = 0.0
        self.latency_verbs.clear()


REASONS = {
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
    403: "Forbidden",
    404: "NotFound",
}
