"""The node agent's kubelet API (ours): the parts of a kubelet's HTTPS API that the API
server proxies ``kubectl logs`` and ``kubectl exec`` (and so ``kubectl cp``) to, on the
node's own address at the kubelet's port (10250; each node has an address of its own, so
the port never collides).

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
are ignored (lines are stored as written).

``/exec/{namespace}/{pod}/{container}?command=...&stdin=&stdout=&stderr=`` is a WebSocket
in Kubernetes' channel protocol (``v5.channel.k8s.io``, or v4): one byte of channel
(0 stdin, 1 stdout, 2 stderr, 3 the final Status, 255 closes a stream) before each
message. The API server sends it here instead of translating to SPDY because the Node
declares ``ExtendWebSocketsToKubelet`` (Kubernetes 1.36+). The command runs as a local
process in the container's environment (``Exec``, from the agent). No TTY, no resize.

Not served: attach, port-forward, metrics, stats (404).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import tempfile
from collections.abc import Awaitable, Callable
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
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
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


# (namespace, pod, container, command) → a started process with pipes (None: no such container)
Exec = Callable[[str, str, str, list[str]], "Awaitable[asyncio.subprocess.Process | None]"]
CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, CLOSE = 0, 1, 2, 3, 255


def exit_status(code: int) -> dict:
    """The Status a kubelet sends on the error channel when the command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def _exec(request: web.Request, run: Exec) -> web.StreamResponse:
    namespace, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
    command = request.query.getall("command", [])
    if not command:
        raise web.HTTPBadRequest(text="you must specify at least 1 command")
    socket = web.WebSocketResponse(protocols=CHANNEL_PROTOCOLS)
    if not socket.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="exec needs a WebSocket (v5.channel.k8s.io)")
    try:
        process = await run(namespace, pod, container, command)
    except OSError as error:
        process, failure = None, str(error)
    else:
        failure = f'container "{container}" in pod "{pod}" is not running on this node'
    await socket.prepare(request)
    if process is None:
        status = {
            "metadata": {},
            "status": "Failure",
            "message": failure,
            "reason": "InternalError",
        }
        await socket.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
        await socket.close()
        return socket

    async def pump(stream: asyncio.StreamReader | None, channel: int) -> None:
        while stream is not None and (chunk := await stream.read(65536)):
            await socket.send_bytes(bytes([channel]) + chunk)

    async def feed() -> None:
        async for message in socket:
            if message.type != web.WSMsgType.BINARY or not message.data:
                continue
            channel, data = message.data[0], message.data[1:]
            if channel == STDIN and process.stdin is not None:
                process.stdin.write(data)
                await process.stdin.drain()
            elif channel == CLOSE and data[:1] == bytes([STDIN]) and process.stdin is not None:
                process.stdin.close()
        if process.returncode is None:  # the client went: so does the command
            process.kill()

    feeding = asyncio.ensure_future(feed())
    await asyncio.gather(pump(process.stdout, STDOUT), pump(process.stderr, STDERR))
    code = await process.wait()
    await socket.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code)).encode())
    feeding.cancel()
    await socket.close()
    return socket


def app(find: Finder, run: Exec | None = None) -> web.Application:
    @web.middleware
    async def only_the_api_server(request: web.Request, handler: Callable) -> web.StreamResponse:
        if _client_name(request) != KUBELET_CLIENT:
            raise web.HTTPForbidden(text="only the API server's kubelet client may ask a node")
        return await handler(request)

    async def container_logs(request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        found = find(namespace, pod, container)
        if found is None:
            raise web.HTTPNotFound(
                text=f'container "{container}" in pod "{pod}" is not on this node'
            )
        path, running, restarts = found
        if request.query.get("previous") in ("true", "1") and restarts == 0:
            raise web.HTTPBadRequest(
                text=f'previous terminated container "{container}" in pod "{pod}" not found'
            )
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

    async def container_exec(request: web.Request) -> web.StreamResponse:
        if run is None:
            raise web.HTTPNotFound()
        return await _exec(request, run)

    application = web.Application(middlewares=[only_the_api_server])
    application.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    for method in ("GET", "POST"):  # a kubelet takes both
        application.router.add_route(method, "/exec/{ns}/{pod}/{container}", container_exec)
    return application


async def serve(
    find: Finder, address: str, client_ca: Path, run: Exec | None = None, port: int = KUBELET_PORT
) -> web.AppRunner:
    runner = web.AppRunner(app(find, run), access_log=None)
    await runner.setup()
    context = serving_context(address, client_ca)
    await web.TCPSite(runner, address, port, ssl_context=context).start()
    return runner
