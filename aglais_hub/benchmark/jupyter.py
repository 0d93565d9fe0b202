"""The Jupyter Server driver: runs a suite notebook on a user's JupyterLab server as a
user would, through the server's own REST and kernel WebSocket APIs with the user's hub
API token (``Authorization: token …``; the server asks the hub whose it is).

For each notebook: upload it through the contents API into the run's own folder
(``Benchmark/<run id>/``), start a kernel there (its working directory), execute every
code cell in order over ``/api/kernels/<id>/channels`` (Jupyter's messaging protocol,
JSON frames) collecting each cell's outputs, stop at the first error, then delete the
kernel and the uploaded file. `close` removes the run's folder, and ``Benchmark/`` when
nothing else is left in it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from collections.abc import Mapping
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from .driver import CellRun, DriverError, Notebook, NotebookRun
from .hub import Api, HubError, UserServer

FOLDER = "Benchmark"
PROTOCOL_VERSION = "5.3"
MAX_MESSAGE_BYTES = 256 * 2**20  # a cell's figures arrive in one frame
CONNECT_TIMEOUT = 60.0
# How long a server the hub calls ready may still answer 503 while its notebook boots
# (a pod's auth proxy is ready before the notebook behind it: flavours.py)
STARTING_PATIENCE = 180.0
STARTING_POLL = 2.0


class KernelGone(Exception):
    """The kernel died or its WebSocket closed while a cell ran."""


def message(msg_type: str, content: Mapping, session: str) -> dict:
    """A Jupyter protocol message on the shell channel, as JupyterLab sends it."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "aglais-benchmark",
            "session": session,
            "date": datetime.datetime.now(datetime.UTC).isoformat(),
            "version": PROTOCOL_VERSION,
        },
        "parent_header": {},
        "metadata": {},
        "content": dict(content),
        "channel": "shell",
        "buffers": [],
    }


def execute_request(code: str, session: str) -> dict:
    """The request to run one cell's ``code`` as a notebook does."""
    return message(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,  # input() fails the cell instead of waiting forever
            "stop_on_error": True,
        },
        session,
    )


class CellOutputs:
    """A cell's outputs in nbformat 4 form, built from its iopub messages as Jupyter's
    front ends build them (consecutive streams merged, ``clear_output`` honoured)."""

    def __init__(self) -> None:
        self.outputs: list[dict] = []
        self._clear_on_next = False

    def add(self, msg_type: str, content: Mapping) -> None:
        """Take one iopub message of the cell; messages that are not outputs are ignored."""
        if msg_type == "clear_output":
            if content.get("wait"):
                self._clear_on_next = True
            else:
                self.outputs.clear()
            return
        output = self._output(msg_type, content)
        if output is None:
            return
        if self._clear_on_next:
            self.outputs.clear()
            self._clear_on_next = False
        last = self.outputs[-1] if self.outputs else None
        if (
            output["output_type"] == "stream"
            and last
            and last["output_type"] == "stream"
            and last["name"] == output["name"]
        ):
            last["text"] += output["text"]
        else:
            self.outputs.append(output)

    @staticmethod
    def _output(msg_type: str, content: Mapping) -> dict | None:
        if msg_type == "stream":
            return {"output_type": "stream", "name": content["name"], "text": content["text"]}
        if msg_type in ("display_data", "execute_result"):
            output = {
                "output_type": msg_type,
                "data": dict(content.get("data", {})),
                "metadata": dict(content.get("metadata", {})),
            }
            if msg_type == "execute_result":
                output["execution_count"] = content.get("execution_count")
            return output
        if msg_type == "error":
            return {
                "output_type": "error",
                "ename": content.get("ename", ""),
                "evalue": content.get("evalue", ""),
                "traceback": list(content.get("traceback", [])),
            }
        return None

    def has_error(self) -> bool:
        return any(output["output_type"] == "error" for output in self.outputs)


def _path(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


class JupyterDriver:
    """Runs notebooks on one Jupyter Server (a user's JupyterLab) for the run ``run_id``."""

    def __init__(self, server: UserServer, http: AsyncHTTPClient, run_id: str) -> None:
        self.server = server
        self.api = Api(http, server.url, server.token)
        self.folder = (FOLDER, run_id)
        self.kernels: tuple[str, ...] = ()

    # -- the REST API ---------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: object = None) -> object:
        try:
            response = await self.api.request(method, path, body)
        except HubError as error:
            raise DriverError(f"{self.server.user}'s server: {error}") from None
        if not response.ok:
            raise DriverError(
                f"{self.server.user}'s server refused {method} {path}: {response.message()}"
            )
        return response.json()

    async def open(self, patience: float = STARTING_PATIENCE) -> None:
        """Check the server is a Jupyter Server and make the run's folder; a 503 (the
        notebook still starting behind a ready auth proxy) is asked again for up to
        ``patience`` seconds."""
        deadline = time.monotonic() + patience
        while True:
            try:
                response = await self.api.request("GET", "api/kernelspecs")
            except HubError as error:
                raise DriverError(f"{self.server.user}'s server: {error}") from None
            if response.status != 503 or time.monotonic() > deadline:
                break
            await asyncio.sleep(STARTING_POLL)
        specs = response.json()
        if not response.ok or not isinstance(specs, dict) or "kernelspecs" not in specs:
            raise DriverError(
                f"{self.server.user}'s server at {self.server.url} does not answer as a "
                f"Jupyter Server (api/kernelspecs gave {response.message()}); only "
                "JupyterLab servers can be benchmarked so far"
            )
        self.kernels = tuple(sorted(specs["kernelspecs"]))
        for depth in range(1, len(self.folder) + 1):
            await self._call(
                "PUT", "api/contents/" + _path(*self.folder[:depth]), {"type": "directory"}
            )

    async def run_notebook(self, notebook: Notebook, timeout: float) -> NotebookRun:
        """Upload ``notebook``, run its code cells in a new kernel, clean up after it."""
        file = "api/contents/" + _path(*self.folder, notebook.name)
        cells: list[CellRun] = []
        problems: list[str] = []
        warnings: list[str] = []
        kernel_id = None
        began = time.monotonic()
        try:
            if notebook.kernel_name not in self.kernels:
                raise DriverError(
                    f"{self.server.user}'s server has no kernel {notebook.kernel_name!r} "
                    f"(it has: {', '.join(self.kernels) or 'none'})"
                )
            await self._call(
                "PUT", file, {"type": "notebook", "format": "json", "content": notebook.document}
            )
            began = time.monotonic()  # as the suite times it: kernel start included
            deadline = began + timeout
            kernel = await self._call(
                "POST", "api/kernels", {"name": notebook.kernel_name, "path": "/".join(self.folder)}
            )
            kernel_id = kernel["id"]  # type: ignore[index]
            problem = await self._execute(kernel_id, notebook, deadline, timeout, cells)
            if problem:
                problems.append(problem)
        except DriverError as error:
            problems.append(str(error))
        finally:
            seconds = time.monotonic() - began
            if kernel_id:
                warnings += await self._remove(f"api/kernels/{quote(kernel_id, safe='')}")
            warnings += await self._remove(file)
        return NotebookRun(seconds, tuple(cells), tuple(problems), tuple(warnings))

    async def _remove(self, path: str) -> list[str]:
        """Delete ``path`` (a kernel or a file); what went wrong, as warnings."""
        try:
            response = await self.api.request("DELETE", path)
        except HubError as error:
            return [f"{path} not removed: {error}"]
        if response.ok or response.status == 404:
            return []
        return [f"{path} not removed: {response.message()}"]

    # -- the kernel -----------------------------------------------------------------------

    async def _connect(
        self, kernel_id: str, session: str, deadline: float
    ) -> WebSocketClientConnection:
        url = self.api.url(f"api/kernels/{quote(kernel_id, safe='')}/channels")
        url = "ws" + url[len("http") :] + f"?session_id={session}"
        request = HTTPRequest(url, headers=self.api.headers(), connect_timeout=CONNECT_TIMEOUT)
        try:
            return await asyncio.wait_for(
                websocket_connect(request, max_message_size=MAX_MESSAGE_BYTES),
                max(deadline - time.monotonic(), 0.001),
            )
        except TimeoutError:
            raise
        except Exception as error:  # tornado raises HTTP, stream and OS errors alike here
            raise DriverError(
                f"{self.server.user}'s server: no kernel WebSocket: {error}"
            ) from None

    async def _execute(
        self,
        kernel_id: str,
        notebook: Notebook,
        deadline: float,
        timeout: float,
        cells: list[CellRun],
    ) -> str | None:
        """Run the code cells, appending each to ``cells``; the problem that stopped the
        notebook outside a cell's own error output, if any."""
        session = uuid.uuid4().hex
        timed_out = f"timed out after {timeout:g} s"
        try:
            ws = await self._connect(kernel_id, session, deadline)
        except TimeoutError:
            return f"{timed_out} starting the kernel"
        try:
            try:
                await self._request(ws, message("kernel_info_request", {}, session), deadline)
            except TimeoutError:
                return f"{timed_out} starting the kernel"
            except KernelGone as gone:
                return f"the kernel did not start: {gone}"
            for index, source in notebook.code_cells():
                start = time.monotonic()
                outputs = CellOutputs()
                status, problem = "ok", None
                try:
                    reply = await self._request(
                        ws, execute_request(source, session), deadline, outputs
                    )
                    if reply.get("status") != "ok":
                        status = "error"
                        if not outputs.has_error():  # aborted, or an error without output
                            outputs.add(
                                "error",
                                {
                                    "ename": reply.get("ename", reply.get("status", "error")),
                                    "evalue": reply.get("evalue", ""),
                                    "traceback": reply.get("traceback", []),
                                },
                            )
                except TimeoutError:
                    status, problem = "timeout", f"{timed_out} in cell {index}"
                except KernelGone as gone:
                    status, problem = "error", f"cell {index}: {gone}"
                seconds = time.monotonic() - start
                cells.append(CellRun(index, status, seconds, tuple(outputs.outputs)))
                if status != "ok":
                    return problem
            return None
        finally:
            ws.close()

    async def _request(
        self,
        ws: WebSocketClientConnection,
        request: dict,
        deadline: float,
        outputs: CellOutputs | None = None,
    ) -> dict:
        """Send ``request``; collect its iopub outputs until the kernel is idle again and
        has replied on the shell channel; the reply's content. TimeoutError at
        ``deadline``, KernelGone if the kernel dies or the socket closes."""
        msg_id = request["header"]["msg_id"]
        await ws.write_message(json.dumps(request))
        reply: dict | None = None
        idle = False
        while reply is None or not idle:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            raw = await asyncio.wait_for(ws.read_message(), remaining)
            if raw is None:
                raise KernelGone("the kernel's connection closed")
            if isinstance(raw, bytes):
                continue  # binary frames carry buffers of widgets' messages: not outputs
            msg = json.loads(raw)
            kind, content = msg.get("msg_type"), msg.get("content") or {}
            parent = (msg.get("parent_header") or {}).get("msg_id")
            if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
                if parent in (None, msg_id):  # the server's own notice has no parent
                    raise KernelGone(f"the kernel died ({content['execution_state']})")
            if parent != msg_id:
                continue
            if msg.get("channel") == "shell":
                if kind and kind.endswith("_reply"):
                    reply = content
            elif kind == "status":
                idle = idle or content.get("execution_state") == "idle"
            elif outputs is not None:
                outputs.add(kind or "", content)
        return reply

    async def close(self) -> list[str]:
        """Remove the run's folder, and ``Benchmark/`` if nothing else is in it."""
        warnings = await self._remove_tree(_path(*self.folder))
        listing = await self._listing(_path(FOLDER))
        if listing is not None and not listing:
            warnings += await self._remove("api/contents/" + _path(FOLDER))
        return warnings

    async def _listing(self, path: str) -> list[dict] | None:
        """The entries of the folder ``path``; None when it cannot be listed."""
        try:
            response = await self.api.request("GET", f"api/contents/{path}?content=1")
        except HubError:
            return None
        model = response.json()
        if not response.ok or not isinstance(model, dict) or model.get("type") != "directory":
            return None
        return list(model.get("content") or [])

    async def _remove_tree(self, path: str) -> list[str]:
        """Delete the folder ``path``; when the server refuses a folder that is not
        empty (it deletes for good rather than to the trash), its entries first."""
        try:
            response = await self.api.request("DELETE", f"api/contents/{path}")
        except HubError as error:
            return [f"{path} not removed: {error}"]
        if response.ok or response.status == 404:
            return []
        warnings: list[str] = []
        for entry in await self._listing(path) or []:
            child = f"{path}/{quote(entry['name'], safe='')}"
            if entry.get("type") == "directory":
                warnings += await self._remove_tree(child)
            else:
                warnings += await self._remove(f"api/contents/{child}")
        return warnings + await self._remove(f"api/contents/{path}")


async def open_driver(server: UserServer, http: AsyncHTTPClient, run_id: str) -> JupyterDriver:
    """A JupyterDriver on ``server``, its folder made; DriverError when the server is not a
    Jupyter Server or refuses."""
    driver = JupyterDriver(server, http, run_id)
    await driver.open()
    return driver
