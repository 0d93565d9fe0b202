"""The example notebooks (notebooks/examples/) run as a user's server runs them — a real
ipykernel, local Spark configured by the local spawner's spark-defaults.conf, the sample
catalogue named by AGLAIS_CATALOGUES — and print and plot what suite.yaml says; and the
suite's own loader and checks (aglais_hub/benchmark/suite.py).

Each notebook's wall time is printed (``pytest -rP`` shows it)."""

from __future__ import annotations

import copy
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from aglais_hub import sampledata, versions
from aglais_hub.benchmark.suite import (
    Check,
    NotebookEntry,
    NotebookOutputs,
    SuiteError,
    check_outputs,
    load_suite,
    notebook_outputs,
    printed_values,
    sha256_text,
)
from aglais_hub.offering import Tier, local_spark_cores
from aglais_hub.testing.platform import cached_sample_catalogue
from spawners.sparkconf import format_spark_defaults, local_spark_defaults

EXAMPLES = Path(__file__).resolve().parent.parent / "notebooks" / "examples"
SUITE = load_suite(EXAMPLES / "suite.yaml")
UNSET_MESSAGE = "AGLAIS_CATALOGUES is not set"

# what a small tier gives a server on this machine: local[2] and a 1 GiB driver
TIER = Tier(
    name="examples",
    rank=0,
    display_name="examples",
    storage=2**30,
    max_executors=1,
    executor_cores=2,
    executor_memory=2**30,
    driver_cores=1,
    driver_memory=2**30,
    concurrent_servers=1,
)


@dataclass(frozen=True)
class Run:
    """One executed notebook: what it shows and how long it took, kernel start included."""

    notebook: nbformat.NotebookNode
    outputs: NotebookOutputs
    seconds: float


def kernel_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that would change how a notebook runs."""
    env = {k: v for k, v in os.environ.items() if k not in {"AGLAIS_CATALOGUES", "MPLBACKEND"}}
    return {**env, **extra}


def execute(path: Path, env: dict[str, str], cwd: Path) -> Run:
    """Run the notebook at ``path`` in a fresh python3 kernel; a cell's error stops it
    and shows in the outputs (as in Jupyter), it is not raised."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=300, startup_timeout=120, allow_errors=False
    )
    start = time.monotonic()
    try:
        client.execute(env=env, cwd=str(cwd))
    except CellExecutionError:
        pass  # the error output is in the notebook
    return Run(notebook, notebook_outputs(notebook), time.monotonic() - start)


@pytest.fixture(scope="module")
def catalogue() -> Path:
    """The sample the suite's values hold for: the default one, which the demo and the
    test platforms read too (cached once per machine)."""
    sample = SUITE.sample
    default = (sampledata.DEFAULT_ROWS, sampledata.DEFAULT_SEED, sampledata.DEFAULT_FILES)
    assert (sample.rows, sample.seed, sample.files) == default, "the suite is for another sample"
    return cached_sample_catalogue()


@pytest.fixture(scope="module")
def spark_conf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SPARK_CONF_DIR as the local spawner writes it, for TIER."""
    directory = tmp_path_factory.mktemp("spark-conf")
    properties = local_spark_defaults(TIER, local_spark_cores(TIER, os.cpu_count() or 1))
    (directory / "spark-defaults.conf").write_text(format_spark_defaults(properties))
    return directory


@pytest.fixture(scope="module")
def run_example(
    catalogue: Path, spark_conf_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[NotebookEntry], Run]]:
    """Runs each suite notebook once, on first use, with the spawner's environment."""
    env = kernel_env(
        AGLAIS_CATALOGUES=str(catalogue),
        SPARK_CONF_DIR=str(spark_conf_dir),
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    runs: dict[str, Run] = {}

    def run(entry: NotebookEntry) -> Run:
        if entry.name not in runs:
            workdir = tmp_path_factory.mktemp(entry.path.stem)  # spark-warehouse and the like
            runs[entry.name] = execute(entry.path, env, workdir)
        return runs[entry.name]

    yield run


# -- the notebooks ----------------------------------------------------------------------------


def test_the_suite_lists_every_example_notebook_and_only_those() -> None:
    listed = [entry.name for entry in SUITE.notebooks]
    assert len(listed) >= 7
    assert sorted(listed) == sorted(p.name for p in EXAMPLES.glob("*.ipynb"))
    assert all(entry.outputs for entry in SUITE.notebooks)  # each checks something


@pytest.mark.timeout(600)
@pytest.mark.parametrize("entry", SUITE.notebooks, ids=lambda entry: entry.path.stem)
def test_example_prints_and_plots_what_the_suite_expects(
    entry: NotebookEntry, run_example: Callable[[NotebookEntry], Run]
) -> None:
    run = run_example(entry)
    print(f"{entry.name}: {run.seconds:.1f} s (suite: {entry.seconds:g} s)")
    assert run.outputs.errors == ()
    printed = printed_values(run.outputs.stdout)
    assert check_outputs(entry, printed, run.outputs.figures) == []
    assert run.outputs.figures == entry.figures


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_are_stored_without_outputs_and_open_with_a_title(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert notebook.cells[0].cell_type == "markdown"
    assert notebook.cells[0].source.startswith("# ")
    source = "\n".join(cell.source for cell in code)
    assert 'os.environ.get("AGLAIS_CATALOGUES"' in code[0].source
    assert "SparkSession.builder.appName(" in source and ".master(" not in source


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.ipynb")), ids=lambda p: p.stem)
def test_without_aglais_catalogues_the_first_cell_says_so(path: Path, tmp_path: Path) -> None:
    run = execute(path, kernel_env(), tmp_path)
    assert len(run.outputs.errors) == 1
    assert run.outputs.errors[0].startswith(f"RuntimeError: {UNSET_MESSAGE}")
    code = [cell for cell in run.notebook.cells if cell.cell_type == "code"]
    assert [output.output_type for output in code[0].outputs] == ["error"]
    assert all(not cell.outputs for cell in code[1:])  # it stopped there, before Spark


def test_the_version_checks_are_the_platforms_pins() -> None:
    wanted = {
        check.label: check.equals for check in SUITE.entry("07-library-versions.ipynb").outputs
    }
    pins = dict(pin.split("==") for pin in versions.SCIENCE_STACK)
    pins |= {
        "spark": versions.SPARK_VERSION,
        "pyspark": versions.SPARK_VERSION,
        "java": versions.JAVA_VERSION,
        "python": versions.PYTHON_VERSION,
        "executor_python": versions.PYTHON_VERSION,
        "executor_numpy": pins["numpy"],
    }
    assert wanted == pins
    assert {c.label: c.equals for c in SUITE.entry("01-validation.ipynb").outputs}[
        "spark_version"
    ] == versions.SPARK_VERSION


# -- suite.py: loading --------------------------------------------------------------------


def write_suite(folder: Path, document: object) -> Path:
    (folder / "a.ipynb").write_text("{}")
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def good_document() -> dict:
    return {
        "sample": {"rows": 200000, "seed": 1},
        "notebooks": [
            {
                "path": "a.ipynb",
                "seconds": 10,
                "figures": 1,
                "outputs": {
                    "rows": {"equals": "200000"},
                    "accuracy": {"value": 0.93, "tolerance": 0.03},
                    "schema": {"sha256": sha256_text("a b")},
                },
            }
        ],
    }


def test_a_good_suite_loads(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, good_document()))
    assert (suite.sample.rows, suite.sample.seed, suite.sample.files) == (200000, 1, 24)
    (entry,) = suite.notebooks
    assert entry.path == (tmp_path / "a.ipynb").resolve() and entry.name == "a.ipynb"
    assert (entry.seconds, entry.figures) == (10.0, 1)
    assert entry.outputs == (
        Check("rows", equals="200000"),
        Check("accuracy", value=0.93, tolerance=0.03),
        Check("schema", sha256=sha256_text("a b")),
    )


def _parent(document: dict, path: str) -> tuple[object, str]:
    """The container of the value at a dotted path (list indices too) and its key."""
    *parents, last = path.split(".")
    node: object = document
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
    return node, last


def _set(path: str, value: object) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        node, key = _parent(document, path)
        node[key] = value  # type: ignore[index]

    return change


def _drop(path: str) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        node, key = _parent(document, path)
        del node[key]  # type: ignore[attr-defined]

    return change


IN_A = "notebook a.ipynb: "
CHECK = "notebooks.0.outputs.accuracy"
# each: a change to the good document, where the message says it is, and what it says
BAD_SUITES = {
    "missing notebook": (
        _set("notebooks.0.path", "gone.ipynb"),
        "notebook gone.ipynb: ",
        "path: no such notebook",
    ),
    "not a notebook": (
        _set("notebooks.0.path", "suite.yaml"),
        "notebook suite.yaml: ",
        "path: must name an .ipynb",
    ),
    "unknown top key": (_set("sampel", {}), "", "suite: unknown key 'sampel'"),
    "unknown sample key": (_set("sample.row", 1), "", "sample: unknown key 'row'"),
    "unknown entry key": (_set("notebooks.0.secs", 3), IN_A, "entry: unknown key 'secs'"),
    "unknown check key": (
        _set(CHECK, {"value": 1, "tolerance": 1, "tol": 1}),
        IN_A,
        "outputs.accuracy: unknown key 'tol'",
    ),
    "no check": (
        _set(CHECK, {}),
        IN_A,
        "outputs.accuracy: needs exactly one of equals, value, sha256 (given: none)",
    ),
    "two checks": (
        _set(CHECK, {"equals": "1", "sha256": "0" * 64}),
        IN_A,
        "outputs.accuracy: needs exactly one of equals, value, sha256 (given: equals, sha256)",
    ),
    "value without tolerance": (
        _set(CHECK, {"value": 1}),
        IN_A,
        "outputs.accuracy: value needs a tolerance",
    ),
    "tolerance without value": (
        _set(CHECK, {"equals": "1", "tolerance": 1}),
        IN_A,
        "outputs.accuracy.tolerance: goes only with value",
    ),
    "negative tolerance": (
        _set(CHECK, {"value": 1, "tolerance": -1}),
        IN_A,
        "outputs.accuracy.tolerance: must be at least 0",
    ),
    "unquoted equals": (
        _set(CHECK, {"equals": 200000}),
        IN_A,
        "outputs.accuracy.equals: must be a quoted string",
    ),
    "bad checksum": (
        _set(CHECK, {"sha256": "abc"}),
        IN_A,
        "outputs.accuracy.sha256: must be 64 lower-case hex",
    ),
    "zero seconds": (
        _set("notebooks.0.seconds", 0),
        IN_A,
        "seconds: must be greater than 0 (got 0)",
    ),
    "negative seconds": (
        _set("notebooks.0.seconds", -5),
        IN_A,
        "seconds: must be greater than 0 (got -5)",
    ),
    "text seconds": (_set("notebooks.0.seconds", "ten"), IN_A, "seconds: must be a number"),
    "no seconds": (_drop("notebooks.0.seconds"), IN_A, "seconds: missing"),
    "negative figures": (_set("notebooks.0.figures", -1), IN_A, "figures: must be at least 0"),
    "no notebooks": (_set("notebooks", []), "", "notebooks: must be a non-empty list"),
    "no sample": (_drop("sample"), "", "suite: missing key 'sample'"),
}


@pytest.mark.parametrize("case", BAD_SUITES, ids=lambda case: case.replace(" ", "-"))
def test_a_bad_suite_is_refused_naming_the_file_the_notebook_and_the_field(
    tmp_path: Path, case: str
) -> None:
    change, where, message = BAD_SUITES[case]
    document = good_document()
    change(document)
    path = write_suite(tmp_path, document)
    with pytest.raises(SuiteError) as refused:
        load_suite(path)
    assert isinstance(refused.value, ValueError)
    assert str(refused.value).startswith(f"{path}: {where}{message}")


def test_a_notebook_listed_twice_and_unreadable_yaml_are_refused(tmp_path: Path) -> None:
    document = good_document()
    document["notebooks"].append(copy.deepcopy(document["notebooks"][0]))
    with pytest.raises(SuiteError, match=r"notebook a\.ipynb: path: listed more than once"):
        load_suite(write_suite(tmp_path, document))
    (tmp_path / "suite.yaml").write_text("sample: [unclosed\n")
    with pytest.raises(SuiteError, match=r"suite\.yaml: cannot be read"):
        load_suite(tmp_path / "suite.yaml")


# -- suite.py: checking ------------------------------------------------------------------


ENTRY = NotebookEntry(
    Path("/x/a.ipynb"),
    10.0,
    2,
    (
        Check("rows", equals="200000"),
        Check("accuracy", value=0.93, tolerance=0.03),
        Check("schema", sha256=sha256_text("source_id bigint, ra double")),
    ),
)
GOOD = {"rows": "200000", "accuracy": "0.95", "schema": "source_id bigint, ra double"}


def test_printed_values_are_the_label_lines_of_stdout() -> None:
    text = (
        "rows: 200000\n"
        " |-- source_id: long (nullable = true)\n"  # printSchema: not a result
        "no colon here\n"
        "scikit-learn: 1.7.2  \n"
        "accuracy: 0.5\n"
        "accuracy: 0.93\n"
    )
    assert printed_values(text) == {"rows": "200000", "scikit-learn": "1.7.2", "accuracy": "0.93"}


def test_check_outputs_passes_a_good_run() -> None:
    assert check_outputs(ENTRY, GOOD, figures=2) == []
    assert check_outputs(ENTRY, {**GOOD, "accuracy": "0.90"}, figures=2) == []  # on the edge


@pytest.mark.parametrize(
    ("printed", "figures", "difference"),
    [
        ({**GOOD, "accuracy": "0.71"}, 2, "accuracy: expected 0.93 ± 0.03, got 0.71"),
        ({**GOOD, "accuracy": "nan"}, 2, "accuracy: expected 0.93 ± 0.03, got nan"),
        (
            {**GOOD, "accuracy": "high"},
            2,
            "accuracy: expected a number 0.93 ± 0.03, got 'high'",
        ),
        ({**GOOD, "rows": "199999"}, 2, "rows: expected '200000', got '199999'"),
        ({k: v for k, v in GOOD.items() if k != "rows"}, 2, "rows: not printed"),
        ({**GOOD, "schema": "source_id bigint"}, 2, "schema: sha256 "),
        (GOOD, 1, "figures: expected 2, got 1"),
        (GOOD, 3, "figures: expected 2, got 3"),
    ],
)
def test_check_outputs_names_each_difference(
    printed: dict[str, str], figures: int, difference: str
) -> None:
    (found,) = check_outputs(ENTRY, printed, figures)
    assert found.startswith(difference)


def test_check_outputs_lists_every_difference() -> None:
    found = check_outputs(ENTRY, {"accuracy": "0.5", "schema": "?"}, figures=0)
    assert [d.split(":")[0] for d in found] == ["rows", "accuracy", "schema", "figures"]
    assert re.search(r"schema: sha256 \w{12}… of '\?', expected \w{12}…", found[2])


def test_notebook_outputs_keep_stdout_figures_and_errors() -> None:
    png = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<F>"}}
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": "# t"},
            {
                "cell_type": "code",
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": "rows: 1\n"},
                    {"output_type": "stream", "name": "stderr", "text": "WARN x: y\n"},
                    png,
                ],
            },
            {
                "cell_type": "code",
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": ["a: 2\n", "b: 3\n"]},
                    {"output_type": "execute_result", "data": {"text/plain": "c: 4"}},
                    png,
                    {"output_type": "error", "ename": "KeyError", "evalue": "'x'"},
                ],
            },
        ]
    }
    outputs = notebook_outputs(notebook)
    assert outputs == NotebookOutputs("rows: 1\na: 2\nb: 3\n", 2, ("KeyError: 'x'",))
    assert printed_values(outputs.stdout) == {"rows": "1", "a": "2", "b": "3"}
