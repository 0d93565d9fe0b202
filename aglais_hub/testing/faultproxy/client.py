"""A client of the fault proxy's control API (ours; standard library only, so a test in
any process can use it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class FaultProxyError(RuntimeError):
    """The control API refused: ``status`` is its HTTP code, the message its reason."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"{status}: {message}")


class FaultProxy:
    """Rules on a running fault proxy, through its control URL (``http://127.0.0.1:N``)."""

    def __init__(self, control: str, timeout: float = 10):
        self.control = control.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: object = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.control + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                text = json.loads(text).get("error", text)
            except ValueError:
                pass
            raise FaultProxyError(error.code, text) from None

    def add(
        self,
        verb: str,
        resource: str,
        status: int | None = None,
        *,
        namespace: str | None = None,
        count: int | None = 1,
        retry_after: int | None = None,
        delay: float | None = None,
        message: str | None = None,
    ) -> str:
        """A rule: the next ``count`` (None: every, until removed) ``verb`` requests on
        ``resource`` (plural, ``pods/status`` for a subresource, "*" for any; in
        ``namespace`` if given) wait ``delay`` seconds, then are answered ``status``
        (a Kubernetes Status; ``Retry-After: retry_after`` with it) or, without a status,
        go on to the API server. Its id."""
        rule = {
            "verb": verb,
            "resource": resource,
            "namespace": namespace,
            "status": status,
            "count": count,
            "retry_after": retry_after,
            "delay": delay,
            "message": message,
        }
        rule = {k: v for k, v in rule.items() if v is not None or k == "count"}
        return self._call("POST", "/faults", rule)["id"]

    def rules(self) -> list[dict]:
        """Every rule in force, each with ``fired`` (how often it has taken a request)."""
        return self._call("GET", "/faults")["faults"]

    def fired(self, rule_id: str) -> int:
        """How many requests rule ``rule_id`` has taken so far."""
        return self._call("GET", f"/faults/{rule_id}")["fired"]

    def remove(self, rule_id: str) -> None:
        self._call("DELETE", f"/faults/{rule_id}")

    def clear(self) -> int:
        """Remove every rule; how many there were."""
        return self._call("DELETE", "/faults")["cleared"]

    def requests(self) -> list[dict]:
        """The last requests the proxy saw (oldest first): method, path, verb, resource,
        namespace, the status answered and the rule that took it, if any."""
        return self._call("GET", "/requests")["requests"]
