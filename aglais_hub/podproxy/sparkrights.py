"""Whether this server's Spark driver may start executors, asked of the API server.

Spark in client mode only logs it when the API server refuses to create its executor
pods, and the job then waits for executors forever. The auth proxy runs in the same pod
as the driver with the same ServiceAccount token (the pod automounts it into every
container), so it asks the API server, with SelfSubjectAccessReviews (which every
authenticated identity may create), whether that account may create, list, watch and
delete pods in its namespace: at start and every ``CHECK_INTERVAL`` seconds. A refusal
goes into the notice bar and ``_aglais/health`` (``app``). Without a mounted token (a
local server) nothing is checked.

What is ours: the check and the wording; what is real: the API server's RBAC answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tornado import httpclient

log = logging.getLogger(__name__)
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
NEEDED_VERBS = ("create", "list", "watch", "delete")  # on pods: what Spark does to executors
CHECK_INTERVAL = 60.0
REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def account_of(token: str) -> str | None:
    """The ServiceAccount's name in a service-account token (its ``sub`` claim,
    ``system:serviceaccount:<namespace>:<name>``; read, not verified: the API server
    verifies it). None for any other token."""
    try:
        payload = token.strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    parts = str(claims.get("sub", "")).split(":") if isinstance(claims, dict) else []
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return parts[3]
    return None


def spark_rights_problem(account: str, namespace: str, allowed: Mapping[str, bool]) -> str | None:
    """What a user should read when ``account`` lacks a verb Spark needs on pods in
    ``namespace`` (``allowed``: verb → the API server's answer); None if it has them all."""
    refused = [verb for verb in NEEDED_VERBS if not allowed.get(verb, False)]
    if not refused:
        return None
    verbs = refused[0] if len(refused) == 1 else ", ".join(refused[:-1]) + " or " + refused[-1]
    return (
        f"Spark cannot start executors: this server's service account ({account}) may "
        f"not {verbs} pods in namespace {namespace}. Ask an administrator to check the "
        f"{account} Role."
    )


@dataclass(frozen=True)
class ServiceAccount:
    """The pod's mounted service-account credentials (the token is read at each use:
    the kubelet rotates it)."""

    directory: Path
    namespace: str
    name: str

    @property
    def token(self) -> str:
        return (self.directory / "token").read_text().strip()

    @property
    def ca_file(self) -> str:
        return str(self.directory / "ca.crt")


def mounted_account(directory: Path) -> ServiceAccount | None:
    """The service account mounted at ``directory``, or None if there is none."""
    try:
        namespace = (directory / "namespace").read_text().strip()
        name = account_of((directory / "token").read_text())
    except OSError:
        return None
    return ServiceAccount(directory, namespace, name) if namespace and name else None


def api_server_url(environ: Mapping[str, str]) -> str | None:
    """The API server as a pod finds it (KUBERNETES_SERVICE_HOST/PORT), or None."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host:
        return None
    return f"https://{f'[{host}]' if ':' in host else host}:{port or 443}"


class SparkRights:
    """The last answer of the API server about the driver's rights on pods."""

    def __init__(
        self,
        account: ServiceAccount,
        api_url: str,
        client: httpclient.AsyncHTTPClient | None = None,
    ):
        self.account = account
        self.api_url = api_url.rstrip("/")
        self.client = client or httpclient.AsyncHTTPClient()
        self.problem: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> SparkRights | None:
        """For the pod's own account (``AGLAIS_SERVICE_ACCOUNT_DIR`` overrides where it is
        mounted, for the testing cluster's node agent); None outside a cluster."""
        directory = Path(environ.get("AGLAIS_SERVICE_ACCOUNT_DIR") or SERVICE_ACCOUNT_DIR)
        account = mounted_account(directory)
        url = api_server_url(environ)
        return cls(account, url) if account and url else None

    async def allowed(self, verb: str) -> bool:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "namespace": self.account.namespace,
                    "verb": verb,
                    "resource": "pods",
                }
            },
        }
        request = httpclient.HTTPRequest(
            self.api_url + REVIEWS,
            method="POST",
            body=json.dumps(review),
            headers={
                "Authorization": f"Bearer {self.account.token}",
                "Content-Type": "application/json",
            },
            ca_certs=self.account.ca_file,
            request_timeout=10,
        )
        answer = await self.client.fetch(request)
        return bool(json.loads(answer.body).get("status", {}).get("allowed"))

    async def check(self) -> str | None:
        """Ask again; the problem (kept as ``problem``), or None. If the API server does
        not answer, the last answer stands."""
        try:
            allowed = {verb: await self.allowed(verb) for verb in NEEDED_VERBS}
        except (OSError, httpclient.HTTPClientError, ValueError) as error:
            log.warning("cannot ask the API server about Spark's rights: %s", error)
            return self.problem
        problem = spark_rights_problem(self.account.name, self.account.namespace, allowed)
        if problem and problem != self.problem:
            log.warning("%s", problem)
        self.problem = problem
        return problem

    async def watch(self, interval: float = CHECK_INTERVAL) -> None:
        """Check now and every ``interval`` seconds (an administrator may fix the Role)."""
        while True:
            await self.check()
            await asyncio.sleep(interval)
