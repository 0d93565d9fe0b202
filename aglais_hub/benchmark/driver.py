"""What the benchmark needs from a notebook server, whatever its flavour: the notebook to
run (a suite's ``.ipynb`` file, read and checked before any server is touched), what one
run of it gives back, and the `Driver` protocol a flavour's module implements
(`aglais_hub.benchmark.jupyter` for Jupyter Server; a Zeppelin driver is one more module
with the same two methods and a factory).

Pure apart from `read_notebook`, which reads the one file it is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .suite import NotebookOutputs, notebook_outputs

if TYPE_CHECKING:
    from tornado.httpclient import AsyncHTTPClient

    from .hub import UserServer

DEFAULT_KERNEL = "python3"
# colours and cursor moves in IPython's tracebacks: noise in a report
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class NotebookFileError(ValueError):
    """A notebook file that is not a notebook; the message names the file and why."""


class DriverError(Exception):
    """A user's server cannot run notebooks at all (not the flavour the driver speaks, no
    such kernel, its API refuses): one line for a reader."""


@dataclass(frozen=True)
class Notebook:
    """A suite notebook as parsed JSON (nbformat 4)."""

    path: Path
    document: Mapping

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kernel_name(self) -> str:
        """The kernel the notebook asks for (its kernelspec), else python3."""
        spec = self.document.get("metadata", {}).get("kernelspec") or {}
        name = spec.get("name") if isinstance(spec, Mapping) else None
        return name if isinstance(name, str) and name else DEFAULT_KERNEL

    def code_cells(self) -> list[tuple[int, str]]:
        """(position in the notebook counting from 1, source) of each code cell with
        code, in order: an empty cell is skipped, as Jupyter's own runners do."""
        cells = []
        for index, cell in enumerate(self.document["cells"], start=1):
            if cell["cell_type"] == "code":
                source = _text(cell["source"])
                if source.strip():
                    cells.append((index, source))
        return cells


def _text(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


def parse_notebook(text: str, path: Path) -> Notebook:
    """The notebook in ``text`` (the file ``path``), else NotebookFileError saying why."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise NotebookFileError(
            f"{path}: not a notebook: invalid JSON at line {error.lineno} column "
            f"{error.colno}: {error.msg}"
        ) from None
    if not isinstance(document, dict):
        raise NotebookFileError(f"{path}: not a notebook: the JSON is not an object")
    if document.get("nbformat") != 4:
        raise NotebookFileError(
            f"{path}: not a notebook of nbformat 4 (nbformat: {document.get('nbformat')!r})"
        )
    cells = document.get("cells")
    if not isinstance(cells, list):
        raise NotebookFileError(f"{path}: not a notebook: 'cells' must be a list")
    for index, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise NotebookFileError(f"{path}: cell {index}: not a cell (no cell_type)")
        source = cell.get("source")
        if not (
            isinstance(source, str)
            or (isinstance(source, list) and all(isinstance(line, str) for line in source))
        ):
            raise NotebookFileError(f"{path}: cell {index}: source must be text")
    if not isinstance(document.get("metadata", {}), dict):
        raise NotebookFileError(f"{path}: not a notebook: 'metadata' must be an object")
    return Notebook(path, document)


def read_notebook(path: Path) -> Notebook:
    """Read and check the notebook file ``path``; NotebookFileError names it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise NotebookFileError(f"{path}: cannot be read: {error}") from None
    return parse_notebook(text, Path(path))


@dataclass(frozen=True)
class CellRun:
    """One executed code cell: ``status`` is ok, error (it raised, or the kernel died in
    it) or timeout (the notebook's time ran out in it); ``outputs`` as nbformat 4 holds
    them, so the suite's own `notebook_outputs` reads them as it reads a saved notebook."""

    index: int  # the cell's position in the notebook, counting from 1
    status: str
    seconds: float
    outputs: tuple[Mapping, ...]

    def shown(self) -> NotebookOutputs:
        """The cell's stdout, figures and errors."""
        return notebook_outputs({"cells": [{"outputs": list(self.outputs)}]})

    def traceback(self) -> str:
        """The cell's error traceback as plain text (no colours), or empty."""
        for output in self.outputs:
            if output.get("output_type") == "error":
                return ANSI.sub("", "\n".join(output.get("traceback", [])))
        return ""


@dataclass(frozen=True)
class NotebookRun:
    """One run of a notebook on one server: wall time (kernel start included), the cells
    that ran (up to the first that failed) and problems outside any cell's outputs (time
    out, kernel died, the server refused the upload)."""

    seconds: float
    cells: tuple[CellRun, ...]
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())  # cleanup that did not work

    def outputs(self) -> NotebookOutputs:
        """What the whole run showed, as the suite's checks read a notebook."""
        return notebook_outputs({"cells": [{"outputs": list(c.outputs)} for c in self.cells]})

    def errors(self) -> list[str]:
        """Each cell's errors (``cell N: Name: value``), then the problems."""
        errors = [
            f"cell {cell.index}: {error}" for cell in self.cells for error in cell.shown().errors
        ]
        return errors + list(self.problems)


class Driver(Protocol):
    """Runs suite notebooks on one user's started server, one at a time."""

    async def run_notebook(self, notebook: Notebook, timeout: float) -> NotebookRun:
        """Run every code cell of ``notebook`` in a fresh kernel, in order, stopping at the
        first that fails or when ``timeout`` seconds have passed; then remove the kernel
        and what was uploaded for it. Problems go into the result, not raised."""
        ...

    async def close(self) -> list[str]:
        """Remove everything the driver made on the server; what could not be removed."""
        ...


class DriverFactory(Protocol):
    """Opens a driver on ``server`` for the run ``run_id``; DriverError when the server
    cannot run notebooks this way (e.g. it is not of the driver's flavour)."""

    def __call__(
        self, server: UserServer, http: AsyncHTTPClient, run_id: str
    ) -> Awaitable[Driver]: ...
