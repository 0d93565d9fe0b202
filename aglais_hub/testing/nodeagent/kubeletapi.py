"""The node agent's kubelet API (ours): the one part of a kubelet's HTTPS API that the API
server proxies ``kubectl logs`` to, ``GET /containerLogs/{namespace}/{pod}/{container}``,
on the node's own address at the kubelet's port (10250; each node has an address of its
own, so the port never collides).

TLS with a serving certificate the agent makes for itself at start (the API server checks
a kubelet's certificate only with --kubelet-certificate-authority, which the testing
cluster leaves unset, as kubeadm does). A request must present a client certificate the
cluster CA signed for the API server's kubelet client (``KUBELET_CLIENT``, what
--kubelet-client-certificate names), so nothing else on the machine reads pods' output
through it; whether the caller may read ``pods/log`` the API server decided before, by
RBAC, as with a real kubelet.

Query parameters as a kubelet reads them: ``follow`` (until the container stops or the
client goes), ``tailLines``, ``limitBytes``; ``previous`` answers 400 when the container
has not restarted (the agent keeps one file per container across restarts, so the
previous run's lines are inside the current answer), ``timestamps`` and ``sinceSeconds``
are ignored (lines are stored as written). Not served: exec, attach, port-forward,
metrics, stats (404).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..controlplane.cluster import KUBELET_CLIENT

KUBELET_PORT = 10250
FOLLOW_POLL = 0.2


def serving_context(address: str, client_ca: Path) -> ssl.SSLContext:
    """TLS for the node's address: a fresh self-signed certificate; clients must present a
    certificate ``client_ca`` signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kubelet@{address}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
        context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cafile=str(client_ca))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _client_name(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    subject = dict(item[0] for item in (peer or {}).get("subject", ()))
    return subject.get("commonName", "")


def tail(data: bytes, lines: int | None, limit: int | None) -> bytes:
    """The last ``lines`` lines of ``data``, then at most ``limit`` bytes of them."""
    if lines is not None:
        parts = data.splitlines(keepends=True)
        data = b"".join(parts[-lines:]) if lines > 0 else b""
    return data[:limit] if limit is not None else data


# (namespace, pod, container) → (the log file, whether the container still runs, restarts)
Finder = Callable[[str, str, str], "tuple[Path, Callable[[], bool], int] | None"]


def _number(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise web.HTTPBadRequest(text=f"{name} must be a non-negative integer")
    return int(value)


def app(find: Finder) -> web.Application:
    async def container_logs(request: web.Request) -> web.StreamResponse:
        if _client_name(request) != KUBELET_CLIENT:
            raise web.HTTPForbidden(text="only the API server's kubelet client may read logs")
        namespace, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        found = find(namespace, pod, container)
        if found is None:
            raise web.HTTPNotFound(text=f'container "{container}" in pod "{pod}" is not '
                                        f"on this node")  # fmt: skip
        path, running, restarts = found
        if request.query.get("previous") in ("true", "1") and restarts == 0:
            raise web.HTTPBadRequest(text=f'previous terminated container "{container}" in '
                                          f'pod "{pod}" not found')  # fmt: skip
        lines, limit = _number(request, "tailLines"), _number(request, "limitBytes")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        data = path.read_bytes() if path.exists() else b""
        await response.write(tail(data, lines, limit))
        sent = len(data)
        if request.query.get("follow") in ("true", "1") and limit is None:
            while running():
                await asyncio.sleep(FOLLOW_POLL)
                size = path.stat().st_size if path.exists() else 0
                if size > sent:
                    with path.open("rb") as log:
                        log.seek(sent)
                        chunk = log.read(size - sent)
                    await response.write(chunk)
                    sent += len(chunk)
        await response.write_eof()
        return response

    application = web.Application()
    application.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    return application


async def serve(find: Finder, address: str, client_ca: Path,
                port: int = KUBELET_PORT) -> web.AppRunner:  # fmt: skip
    runner = web.AppRunner(app(find), access_log=None)
    await runner.setup()
    context = serving_context(address, client_ca)
    await web.TCPSite(runner, address, port, ssl_context=context).start()
    return runner
