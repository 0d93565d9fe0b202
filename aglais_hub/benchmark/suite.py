"""The example suite: which notebooks to run, how long each should take, what each prints.

``suite.yaml`` lists notebooks beside it; each entry gives the expected wall time on two
cores (``seconds``), the number of PNG figures and checks of the ``label: value`` lines the
notebook prints on the default sample catalogue::

    sample: {rows: 200000, seed: 1, files: 24}
    notebooks:
      - path: 05-astrometric-classifier.ipynb
        seconds: 30
        figures: 1
        outputs:
          test_rows: {equals: "40074"}                # the exact text
          accuracy: {value: 0.99, tolerance: 0.01}    # a number within a tolerance
          features: {sha256: "…"}                     # the checksum of the text

Pure: `load_suite` reads the one file it is given; everything else works on values.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

# a printed result: `label: value` at the start of a line
PRINTED = re.compile(r"^([A-Za-z][\w.-]*): (.*?)\s*$")
LABEL = re.compile(r"^[A-Za-z][\w.-]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHECK_KINDS = ("equals", "value", "sha256")


class SuiteError(ValueError):
    """suite.yaml is wrong; the message names the file, the notebook and the field."""


@dataclass(frozen=True)
class Check:
    """One printed result: exactly one of ``equals``, ``value`` (with ``tolerance``) or
    ``sha256`` is set."""

    label: str
    equals: str | None = None
    value: float | None = None
    tolerance: float = 0.0
    sha256: str | None = None

    def expected(self) -> str:
        """What the check wants, as a reader would write it."""
        if self.equals is not None:
            return repr(self.equals)
        if self.value is not None:
            return f"{self.value:g} ± {self.tolerance:g}"
        return f"text of sha256 {self.sha256}"

    def difference(self, printed: str | None) -> str | None:
        """None if ``printed`` (None: the label was not printed) passes, else why not."""
        if printed is None:
            return f"{self.label}: not printed"
        if self.equals is not None:
            if printed != self.equals:
                return f"{self.label}: expected {self.equals!r}, got {printed!r}"
            return None
        if self.value is not None:
            try:
                number = float(printed)
            except ValueError:
                return f"{self.label}: expected a number {self.expected()}, got {printed!r}"
            off = abs(number - self.value)
            # on the edge passes (0.93 - 0.90 is a hair above 0.03 in binary); NaN fails
            if not (off <= self.tolerance or math.isclose(off, self.tolerance, rel_tol=1e-9)):
                return f"{self.label}: expected {self.expected()}, got {printed}"
            return None
        digest = sha256_text(printed)
        if digest != self.sha256:
            shown = printed if len(printed) <= 60 else printed[:57] + "..."
            return (
                f"{self.label}: sha256 {digest[:12]}… of {shown!r}, "
                f"expected {self.sha256[:12]}…"  # type: ignore[index]
            )
        return None


@dataclass(frozen=True)
class NotebookEntry:
    """One notebook of the suite and what its run must show."""

    path: Path  # absolute: the suite's directory joined with the entry's path
    seconds: float  # expected wall time on two cores
    figures: int  # image/png outputs
    outputs: tuple[Check, ...]

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Sample:
    """The sample catalogue the expected outputs hold for (`aglais-hub sample-data`)."""

    rows: int
    seed: int
    files: int = 24


@dataclass(frozen=True)
class Suite:
    """The suite file and its notebooks, in the order they run."""

    path: Path
    sample: Sample
    notebooks: tuple[NotebookEntry, ...]

    def entry(self, name: str) -> NotebookEntry:
        """The entry of the notebook file called ``name``; KeyError if none."""
        for entry in self.notebooks:
            if entry.name == name:
                return entry
        raise KeyError(name)


@dataclass(frozen=True)
class NotebookOutputs:
    """What an executed notebook shows: its stdout, its PNG figures and its errors."""

    stdout: str
    figures: int
    errors: tuple[str, ...]


def sha256_text(text: str) -> str:
    """The checksum a ``sha256`` check compares: of the value's UTF-8 text."""
    return hashlib.sha256(text.encode()).hexdigest()


def printed_values(text: str) -> dict[str, str]:
    """The ``label: value`` lines of ``text`` (a later line wins over an earlier one)."""
    values = {}
    for line in text.splitlines():
        match = PRINTED.match(line)
        if match:
            values[match[1]] = match[2]
    return values


def notebook_outputs(notebook: Mapping) -> NotebookOutputs:
    """The stdout streams, image/png outputs and errors of an executed notebook (nbformat 4
    as a mapping). Only stdout holds results: Spark's log lines go to stderr."""
    stdout, figures, errors = [], 0, []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "stream" and output.get("name") == "stdout":
                text = output.get("text", "")
                stdout.append(text if isinstance(text, str) else "".join(text))
            elif kind == "error":
                errors.append(f"{output.get('ename')}: {output.get('evalue')}")
            elif "image/png" in output.get("data", {}):
                figures += 1
    return NotebookOutputs("".join(stdout), figures, tuple(errors))


def check_outputs(entry: NotebookEntry, printed: Mapping[str, str], figures: int) -> list[str]:
    """What differs between a run's printed values and figures and the entry's: one line
    per difference, empty when the run passes."""
    differences = [
        difference
        for check in entry.outputs
        if (difference := check.difference(printed.get(check.label))) is not None
    ]
    if figures != entry.figures:
        differences.append(f"figures: expected {entry.figures}, got {figures}")
    return differences


# -- loading --------------------------------------------------------------------------------


class _Place:
    """Where in the file a value sits, for error messages."""

    def __init__(self, file: Path, notebook: str | None = None) -> None:
        self.file, self.notebook = file, notebook

    def error(self, field: str, problem: str) -> SuiteError:
        where = f"notebook {self.notebook}: " if self.notebook else ""
        return SuiteError(f"{self.file}: {where}{field}: {problem}")

    def mapping(self, value: object, field: str, allowed: set[str], required: set[str]) -> dict:
        if not isinstance(value, Mapping):
            raise self.error(field, f"must be a mapping, not {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.error(
                field, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
            )
        missing = sorted(required - set(value))
        if missing:
            raise self.error(field, f"missing key {missing[0]!r}")
        return dict(value)

    def number(self, value: object, field: str, minimum: float, strict: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(field, f"must be a number, not {value!r}")
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = f"{'greater than' if strict else 'at least'} {minimum:g}"
            raise self.error(field, f"must be {bound} (got {value!r})")
        return float(value)

    def integer(self, value: object, field: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(field, f"must be a whole number, not {value!r}")
        if value < minimum:
            raise self.error(field, f"must be at least {minimum} (got {value})")
        return value


def _check(place: _Place, label: object, spec: object) -> Check:
    field = f"outputs.{label}"
    if not isinstance(label, str) or not LABEL.match(label):
        raise place.error(field, "a label is letters, digits and _ . - (starting with a letter)")
    spec = place.mapping(spec, field, {*CHECK_KINDS, "tolerance"}, set())
    kinds = [kind for kind in CHECK_KINDS if kind in spec]
    if len(kinds) != 1:
        given = ", ".join(kinds) or "none"
        raise place.error(field, f"needs exactly one of equals, value, sha256 (given: {given})")
    if "tolerance" in spec and kinds != ["value"]:
        raise place.error(f"{field}.tolerance", "goes only with value")
    if "equals" in spec:
        if not isinstance(spec["equals"], str):
            raise place.error(f"{field}.equals", f"must be a quoted string, not {spec['equals']!r}")
        return Check(label, equals=spec["equals"])
    if "value" in spec:
        if "tolerance" not in spec:
            raise place.error(field, "value needs a tolerance")
        value = place.number(spec["value"], f"{field}.value", -math.inf, False)
        tolerance = place.number(spec["tolerance"], f"{field}.tolerance", 0, False)
        return Check(label, value=value, tolerance=tolerance)
    digest = spec["sha256"]
    if not isinstance(digest, str) or not SHA256.match(digest):
        raise place.error(f"{field}.sha256", "must be 64 lower-case hexadecimal digits")
    return Check(label, sha256=digest)


def _entry(suite_file: Path, index: int, spec: object) -> NotebookEntry:
    name = spec.get("path") if isinstance(spec, Mapping) else None
    place = _Place(suite_file, f"{name}" if isinstance(name, str) else f"#{index + 1}")
    spec = place.mapping(spec, "entry", {"path", "seconds", "figures", "outputs"}, {"path"})
    if not isinstance(name, str) or not name.endswith(".ipynb"):
        raise place.error("path", f"must name an .ipynb file, not {name!r}")
    path = suite_file.parent / name
    if not path.is_file():
        raise place.error("path", f"no such notebook: {path}")
    if "seconds" not in spec:
        raise place.error("seconds", "missing (the expected wall time)")
    seconds = place.number(spec["seconds"], "seconds", 0, True)
    figures = place.integer(spec.get("figures", 0), "figures", 0)
    outputs = spec.get("outputs") or {}
    if not isinstance(outputs, Mapping):
        raise place.error("outputs", "must be a mapping of label to check")
    checks = tuple(_check(place, label, check) for label, check in outputs.items())
    return NotebookEntry(path.resolve(), seconds, figures, checks)


def load_suite(path: Path | str) -> Suite:
    """Read and validate a suite file; SuiteError (a ValueError) names what is wrong."""
    path = Path(path)
    place = _Place(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SuiteError(f"{path}: cannot be read: {error}") from None
    document = place.mapping(document, "suite", {"sample", "notebooks"}, {"sample", "notebooks"})
    sample = place.mapping(
        document["sample"], "sample", {"rows", "seed", "files"}, {"rows", "seed"}
    )
    sample = Sample(
        rows=place.integer(sample["rows"], "sample.rows", 100),
        seed=place.integer(sample["seed"], "sample.seed", 0),
        files=place.integer(sample.get("files", 24), "sample.files", 1),
    )
    if not isinstance(document["notebooks"], list) or not document["notebooks"]:
        raise place.error("notebooks", "must be a non-empty list")
    entries = tuple(_entry(path, i, spec) for i, spec in enumerate(document["notebooks"]))
    names = [entry.name for entry in entries]
    for name in names:
        if names.count(name) > 1:
            raise _Place(path, name).error("path", "listed more than once")
    return Suite(path, sample, entries)
