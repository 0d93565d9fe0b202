"""A stand-in for Apache Zeppelin, for tests only (Zeppelin cannot be installed here).

It serves the subset of Zeppelin's REST API the platform uses, under
ZEPPELIN_SERVER_CONTEXT_PATH on ZEPPELIN_ADDR:ZEPPELIN_PORT: ``GET api/version``;
notebooks (``GET/POST api/notebook``, ``GET api/notebook/{id}``, ``POST
api/notebook/import``), kept as JSON files in ZEPPELIN_NOTEBOOK_DIR; running a
paragraph (``POST api/notebook/run/{note}/{paragraph}``) or a whole note (``POST
api/notebook/job/{note}``, then ``GET api/notebook/job/{note}`` for the status); and a
``/ws`` WebSocket that answers Zeppelin's PING. ``%pyspark`` paragraphs run in one
Python interpreter per process with real PySpark, configured by the spark-defaults.conf
in SPARK_CONF_DIR, so executors come from the pod's Spark configuration; ``%md`` is
echoed. Everything else of Zeppelin (its UI, other interpreters, auth) is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import traceback
from pathlib import Path
from typing import Any

from tornado import web, websocket

VERSION = "0.12.0-aglais-standin"

INDEX_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Zeppelin</title></head>
<body><zeppelin-root>Loading...</zeppelin-root></body></html>"""


class Notebooks:
    """Notes as JSON files; one interpreter namespace shared by all %pyspark paragraphs."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.namespace: dict[str, Any] = {}
        self.lock = asyncio.Lock()

    def path(self, note_id: str) -> Path:
        return self.directory / f"{note_id}.zpln"

    def load(self, note_id: str) -> dict:
        path = self.path(note_id)
        if not path.exists():
            raise web.HTTPError(404, f"note {note_id} not found")
        return json.loads(path.read_text())

    def save(self, note: dict) -> None:
        self.path(note["id"]).write_text(json.dumps(note, indent=2))

    def create(self, body: dict) -> dict:
        note = {
            "id": secrets.token_hex(5).upper(),
            "name": body.get("name", "Untitled"),
            "paragraphs": [],
        }
        for paragraph in body.get("paragraphs") or []:
            note["paragraphs"].append(
                {
                    "id": f"paragraph_{secrets.token_hex(6)}",
                    "text": paragraph.get("text", ""),
                    "title": paragraph.get("title", ""),
                    "status": "READY",
                }
            )
        self.save(note)
        return note

    def all(self) -> list[dict]:
        return [
            {"id": p.stem, "name": json.loads(p.read_text()).get("name", "")}
            for p in sorted(self.directory.glob("*.zpln"))
        ]

    def execute(self, text: str) -> dict:
        """Run one paragraph; Zeppelin's result shape."""
        head, _, code = text.partition("\n")
        kind = head.strip() if head.startswith("%") else "%pyspark"
        if not head.startswith("%"):
            code = text
        if kind == "%md":
            return {"code": "SUCCESS", "msg": [{"type": "HTML", "data": code}]}
        if kind not in ("%pyspark", "%spark.pyspark", "%python"):
            return {
                "code": "ERROR",
                "msg": [{"type": "TEXT", "data": f"{kind}: interpreter not available"}],
            }
        if "spark" not in self.namespace and kind != "%python":
            from pyspark.sql import SparkSession

            spark = SparkSession.builder.appName("zeppelin").getOrCreate()
            self.namespace.update(spark=spark, sc=spark.sparkContext)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "<paragraph>", "exec"), self.namespace)  # noqa: S102
        except Exception:  # a paragraph's error is its result, as in Zeppelin
            return {
                "code": "ERROR",
                "msg": [{"type": "TEXT", "data": out.getvalue() + traceback.format_exc()}],
            }
        return {"code": "SUCCESS", "msg": [{"type": "TEXT", "data": out.getvalue()}]}

    async def run(self, note_id: str, paragraph_id: str) -> dict:
        note = self.load(note_id)
        paragraph = next((p for p in note["paragraphs"] if p["id"] == paragraph_id), None)
        if paragraph is None:
            raise web.HTTPError(404, f"paragraph {paragraph_id} not found")
        async with self.lock:
            paragraph["status"] = "RUNNING"
            self.save(note)  # the job's status says so while it runs, as Zeppelin's does
            result = await asyncio.get_running_loop().run_in_executor(
                None, self.execute, paragraph["text"]
            )
        note = self.load(note_id)
        for p in note["paragraphs"]:
            if p["id"] == paragraph_id:
                p["results"] = result
                p["status"] = "FINISHED" if result["code"] == "SUCCESS" else "ERROR"
        self.save(note)
        return result


class Api(web.RequestHandler):
    def initialize(self, notes: Notebooks) -> None:
        self.notes = notes

    def ok(self, body: Any = None) -> None:
        self.finish({"status": "OK", "message": "", "body": body})

    def body(self) -> dict:
        return json.loads(self.request.body or b"{}")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish({"status": self._reason, "message": self._reason})


class Version(Api):
    def get(self) -> None:
        self.ok({"version": VERSION})


class NoteCollection(Api):
    def get(self) -> None:
        self.ok(self.notes.all())

    def post(self) -> None:
        self.ok(self.notes.create(self.body())["id"])


class NoteImport(Api):
    def post(self) -> None:
        self.ok(self.notes.create(self.body())["id"])


class Note(Api):
    def get(self, note_id: str) -> None:
        self.ok(self.notes.load(note_id))


class RunParagraph(Api):
    async def post(self, note_id: str, paragraph_id: str) -> None:
        self.ok(await self.notes.run(note_id, paragraph_id))


class Job(Api):
    async def post(self, note_id: str) -> None:
        note = self.notes.load(note_id)

        async def run_all() -> None:
            for paragraph in note["paragraphs"]:
                result = await self.notes.run(note_id, paragraph["id"])
                if result["code"] != "SUCCESS":
                    return

        asyncio.ensure_future(run_all())
        self.ok()

    def get(self, note_id: str) -> None:
        note = self.notes.load(note_id)
        self.ok(
            {
                "id": note_id,
                "paragraphs": [
                    {"id": p["id"], "status": p.get("status", "READY")} for p in note["paragraphs"]
                ],
            }
        )


class Socket(websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def on_message(self, message: str | bytes) -> None:
        op = json.loads(message).get("op")
        if op == "PING":
            self.write_message(json.dumps({"op": "PONG", "data": {}}))


class Index(web.RequestHandler):
    """Zeppelin's single-page app shell at the context root (real Zeppelin serves its
    index.html there; the auth proxy adds its booking-notice script to it)."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(INDEX_HTML)


def make_app(context_path: str, notes: Notebooks) -> web.Application:
    p = context_path.rstrip("/")
    args = {"notes": notes}
    return web.Application(
        [
            (f"{p}/api/version", Version, args),
            (f"{p}/api/notebook", NoteCollection, args),
            (f"{p}/api/notebook/import", NoteImport, args),
            (f"{p}/api/notebook/run/([^/]+)/([^/]+)", RunParagraph, args),
            (f"{p}/api/notebook/job/([^/]+)", Job, args),
            (f"{p}/api/notebook/([^/]+)", Note, args),
            (f"{p}/ws", Socket),
            (f"{p}/?", Index),
        ]
    )


def main() -> None:
    env = os.environ
    notes = Notebooks(Path(env.get("ZEPPELIN_NOTEBOOK_DIR", "notebook")))
    app = make_app(env.get("ZEPPELIN_SERVER_CONTEXT_PATH", ""), notes)

    async def serve() -> None:
        app.listen(int(env.get("ZEPPELIN_PORT", "8080")), env.get("ZEPPELIN_ADDR", "127.0.0.1"))
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
