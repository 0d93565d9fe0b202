"""`aglais-hub benchmark` (aglais_hub/benchmark/): the verdicts, the tokens file and the
notebook files on their own; then end to end on the real demo platform (the session's
`platform`: real JupyterHub, proxy, OIDC provider and JupyterLab servers with local
Spark), with API tokens made as a user makes them on the hub's Token page.

The whole suite runs once, for two users at once; the broken, SLOW and FAST cases run the
short 07-library-versions notebook from temporary suites for one user."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests
import yaml

from aglais_hub import cli
from aglais_hub.benchmark.cli import TokensError, choose_users, parse_tokens, read_tokens
from aglais_hub.benchmark.driver import NotebookFileError, parse_notebook
from aglais_hub.benchmark.hub import progress_events
from aglais_hub.benchmark.jupyter import CellOutputs
from aglais_hub.benchmark.run import UserToken
from aglais_hub.benchmark.suite import NotebookEntry, load_suite
from aglais_hub.benchmark.verdict import Verdict, exit_status, judge
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "notebooks" / "examples"
SUITE = EXAMPLES / "suite.yaml"
SHORT = "07-library-versions.ipynb"
ENTRY = NotebookEntry(Path("/suite/x.ipynb"), seconds=20.0, figures=0, outputs=())


# -- verdicts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "factor", "verdict"),
    [
        (20.0, 2.0, Verdict.PASS),
        (40.0, 2.0, Verdict.PASS),  # exactly factor × expected is not SLOW
        (40.001, 2.0, Verdict.SLOW),
        (10.0, 2.0, Verdict.PASS),  # exactly half is not FAST
        (9.999, 2.0, Verdict.FAST),
        (0.0, 2.0, Verdict.FAST),
        (59.0, 3.0, Verdict.PASS),
        (60.001, 3.0, Verdict.SLOW),
        (20.001, 1.0, Verdict.SLOW),
    ],
)
def test_the_verdict_follows_the_time(seconds, factor, verdict):
    judgement = judge(ENTRY, seconds, [], [], factor)
    assert judgement.verdict is verdict
    assert (judgement.detail == "") == (verdict is Verdict.PASS)


def test_slow_and_fast_say_why():
    assert judge(ENTRY, 41, [], []).detail == "over 2 × the expected time"
    assert judge(ENTRY, 51, [], [], 2.5).detail == "over 2.5 × the expected time"
    assert judge(ENTRY, 1, [], []).detail == "under half the expected time: suspiciously fast"


def test_an_error_wins_over_time_and_differences_and_shows_the_first():
    errors = ["cell 3: RuntimeError: boom", "timed out"]
    judgement = judge(ENTRY, 1000, errors, ["python: expected '3.11', got '2.7'"])
    assert judgement.verdict is Verdict.ERROR
    assert judgement.detail == "cell 3: RuntimeError: boom (and 1 more errors)"


def test_an_output_that_differs_is_an_error_showing_the_first_difference():
    judgement = judge(ENTRY, 20, [], ["a: expected '1', got '2'", "figures: expected 1, got 0"])
    assert judgement.verdict is Verdict.ERROR
    assert judgement.detail == "output differs: a: expected '1', got '2' (and 1 more differences)"
    assert judge(ENTRY, 20, [], ["a: not printed"]).detail == "output differs: a: not printed"


def test_the_exit_status_fails_on_error_and_with_strict_on_slow_and_fast():
    assert exit_status([], strict=True) == 0
    assert exit_status([Verdict.PASS, Verdict.SLOW, Verdict.FAST], strict=False) == 0
    assert exit_status([Verdict.PASS, Verdict.SLOW], strict=True) == 1
    assert exit_status([Verdict.FAST], strict=True) == 1
    assert exit_status([Verdict.PASS, Verdict.ERROR], strict=False) == 1


# -- the tokens file ------------------------------------------------------------------------


def test_tokens_are_lines_of_user_and_token_with_comments():
    text = "# the CI users\n\nalice  abc123\n  bob\tdef456   # power tier\n"
    assert parse_tokens(text, "t.txt") == [UserToken("alice", "abc123"), UserToken("bob", "def456")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice abc123 extra\n", "t.txt:1: expected 'username token', found 3 fields"),
        ("# only\n\nbob\n", "t.txt:3: expected 'username token', found 1 field"),
        ("alice a1\nalice a2\n", "t.txt:2: alice is listed twice"),
        ("", "t.txt: no users in it"),
        ("# nobody yet\n", "t.txt: no users in it"),
    ],
)
def test_a_malformed_tokens_file_is_refused_naming_the_line_never_the_token(text, message):
    with pytest.raises(TokensError) as refused:
        parse_tokens(text, "t.txt")
    assert str(refused.value).startswith(message)
    assert "abc123" not in str(refused.value) and "a2" not in str(refused.value)


def test_users_takes_the_first_n_and_refuses_more_than_there_are(tmp_path):
    users = [UserToken("alice", "a"), UserToken("bob", "b")]
    assert choose_users(users, None, "t") == users
    assert choose_users(users, 1, "t") == users[:1]
    with pytest.raises(TokensError, match=r"--users 3: t has only 2 users"):
        choose_users(users, 3, "t")
    with pytest.raises(TokensError, match=r"missing\.txt: cannot read the tokens file: No such"):
        read_tokens(tmp_path / "missing.txt")


# -- notebook files and protocol pieces -----------------------------------------------------


def test_a_notebook_file_that_does_not_parse_is_named():
    path = Path("/x/broken.ipynb")
    with pytest.raises(NotebookFileError, match=r"^/x/broken\.ipynb: not a notebook: invalid JSON"):
        parse_notebook("{not json", path)
    with pytest.raises(NotebookFileError, match=r"nbformat 4 \(nbformat: 3\)"):
        parse_notebook('{"nbformat": 3, "cells": []}', path)
    with pytest.raises(NotebookFileError, match=r"cell 2: source must be text"):
        parse_notebook(
            json.dumps({"nbformat": 4, "cells": [_code("1"), {"cell_type": "code", "source": 1}]}),
            path,
        )


def _code(source: str) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {}, "outputs": []}


def test_the_code_cells_are_numbered_as_in_the_notebook_and_empty_ones_skipped():
    cells = [{"cell_type": "markdown", "source": "# t"}, _code(["a = 1\n", "a"]), _code("  \n")]
    notebook = parse_notebook(json.dumps({"nbformat": 4, "cells": cells}), Path("n.ipynb"))
    assert notebook.code_cells() == [(2, "a = 1\na")]
    assert notebook.kernel_name == "python3"


def test_cell_outputs_merge_streams_and_honour_clear_output():
    outputs = CellOutputs()
    outputs.add("stream", {"name": "stdout", "text": "a: 1\n"})
    outputs.add("stream", {"name": "stdout", "text": "b: 2\n"})
    outputs.add("status", {"execution_state": "idle"})
    assert outputs.outputs == [{"output_type": "stream", "name": "stdout", "text": "a: 1\nb: 2\n"}]
    outputs.add("clear_output", {"wait": True})
    assert len(outputs.outputs) == 1  # cleared only when the next output comes
    outputs.add("display_data", {"data": {"image/png": "iVBOR"}, "metadata": {}})
    assert [o["output_type"] for o in outputs.outputs] == ["display_data"]


def test_progress_events_are_read_from_a_split_stream():
    events, rest = progress_events('data: {"progress": 50}\n\ndata: {"ready": tr')
    assert events == [{"progress": 50}] and rest == 'data: {"ready": tr'
    events, rest = progress_events(rest + 'ue, "message": "ok"}\n\n')
    assert events == [{"ready": True, "message": "ok"}] and rest == ""


# -- local problems: exit 2 before the hub is asked -----------------------------------------


def write_suite(directory: Path, entries: dict[str, dict]) -> Path:
    """A suite file in ``directory`` listing ``entries`` (path: fields)."""
    suite = yaml.safe_load(SUITE.read_text())
    document = {
        "sample": suite["sample"],
        "notebooks": [{"path": p, **e} for p, e in entries.items()],
    }
    path = directory / "suite.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["benchmark", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_local_problems_exit_2_naming_the_file_before_the_hub_is_asked(tmp_path, capsys):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice a1\n")
    hub = "http://127.0.0.1:9/"  # never asked: the checks come first
    bad_suite = tmp_path / "bad.yaml"
    bad_suite.write_text("sample: {rows: 200000, seed: 1}\nnotebooks: []\n")
    status, _, err = run_cli(
        capsys, "--hub", hub, "--tokens", str(tokens), "--notebooks", str(bad_suite)
    )
    assert status == 2 and "bad.yaml: notebooks: must be a non-empty list" in err

    (tmp_path / "broken.ipynb").write_text('{"nbformat": 4, "cells": [')
    suite = write_suite(tmp_path, {"broken.ipynb": {"seconds": 5}})
    status, _, err = run_cli(
        capsys, "--hub", hub, "--tokens", str(tokens), "--notebooks", str(suite)
    )
    assert status == 2
    assert f"{tmp_path / 'broken.ipynb'}: not a notebook: invalid JSON" in err
    assert "Traceback" not in err

    status, _, err = run_cli(capsys, "--hub", hub, "--tokens", str(tokens), "--users", "2")
    assert status == 2 and "--users 2:" in err and "has only 1 user" in err
    status, _, err = run_cli(capsys, "--hub", hub, "--tokens", str(tokens), "--only", "nope")
    assert status == 2 and "--only nope:" in err and SHORT in err
    status, _, err = run_cli(capsys, "--hub", hub, "--tokens", str(tmp_path / "none"))
    assert status == 2 and "cannot read the tokens file" in err
    with pytest.raises(SystemExit) as usage:  # argparse's own usage errors
        cli.main(["benchmark", "--hub", hub, "--tokens", str(tokens), "--slow-factor", "0.5"])
    assert usage.value.code == 2


# -- end to end -----------------------------------------------------------------------------


def short_entry(**changes: object) -> dict:
    """07-library-versions' entry in the real suite, with ``changes``."""
    entry = next(e for e in yaml.safe_load(SUITE.read_text())["notebooks"] if e["path"] == SHORT)
    return {**{k: v for k, v in entry.items() if k != "path"}, **changes}


def copy_short(directory: Path, name: str, break_cell: int | None = None) -> dict:
    """Copy 07-library-versions to ``directory/name``; ``break_cell`` (its position in
    the notebook) made to raise. The notebook as JSON."""
    document = json.loads((EXAMPLES / SHORT).read_text())
    if break_cell is not None:
        assert document["cells"][break_cell - 1]["cell_type"] == "code"
        document["cells"][break_cell - 1]["source"] = 'raise RuntimeError("deliberately broken")\n'
    (directory / name).write_text(json.dumps(document))
    return document


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def server_model(platform, user: str, token: str) -> dict | None:
    response = requests.get(f"{platform.url}hub/api/users/{user}", headers=auth(token), timeout=30)
    response.raise_for_status()
    return response.json()["servers"].get("")


def stop_server(platform, user: str, token: str) -> None:
    requests.delete(f"{platform.url}hub/api/users/{user}/server", headers=auth(token), timeout=60)
    deadline = time.monotonic() + 60
    while server_model(platform, user, token) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert server_model(platform, user, token) is None


def kernels(platform, user: str, token: str) -> set[str]:
    response = requests.get(
        f"{platform.url}user/{user}/api/kernels", headers=auth(token), timeout=30
    )
    response.raise_for_status()
    return {kernel["id"] for kernel in response.json()}


def root_listing(platform, user: str, token: str) -> list[str]:
    response = requests.get(
        f"{platform.url}user/{user}/api/contents", headers=auth(token), timeout=30
    )
    response.raise_for_status()
    return [item["name"] for item in response.json()["content"]]


def log_in(platform, user: str) -> HubClient:
    client = HubClient(platform.url)
    client.login(user, user)
    return client


@pytest.fixture(scope="module")
def tokens(platform) -> dict[str, str]:
    """API tokens of alice and bob, made as the hub's Token page makes them."""
    return {user: log_in(platform, user).new_token("benchmark test") for user in ("alice", "bob")}


@pytest.fixture(scope="module")
def tokens_file(tokens, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("benchmark") / "tokens.txt"
    path.write_text("# user token\n" + "".join(f"{u} {t}\n" for u, t in tokens.items()))
    return path


@pytest.fixture(scope="module")
def alice_running(platform, tokens) -> Iterator[None]:
    """alice's server runs before the benchmarks (so they must leave it running); bob's
    does not (so the full run starts it and must stop it). The session's platform is
    left as found: alice's server stops after this module."""
    event = log_in(platform, "alice").start_server()
    assert event.get("ready"), event
    if server_model(platform, "bob", tokens["bob"]):
        stop_server(platform, "bob", tokens["bob"])
    yield
    stop_server(platform, "alice", tokens["alice"])


@pytest.fixture(scope="module")
def full_run(platform, tokens, tokens_file, alice_running, tmp_path_factory) -> dict:
    """The whole suite for two users at once, as the real command (a subprocess)."""
    kernels_before = kernels(platform, "alice", tokens["alice"])
    out = tmp_path_factory.mktemp("full") / "results"
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "aglais_hub.cli", "benchmark", "--hub", platform.url,
         "--tokens", str(tokens_file), "--users", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=2400,
    )  # fmt: skip
    print(done.stdout, done.stderr, f"full run: {time.monotonic() - began:.0f} s", sep="\n")
    return {"done": done, "out": out, "kernels_before": kernels_before}


@pytest.mark.e2e
@pytest.mark.timeout(2700)
def test_the_whole_suite_for_two_users_at_once_has_no_error(full_run):
    done, out = full_run["done"], full_run["out"]
    names = [entry.name for entry in load_suite(SUITE).notebooks]
    assert done.returncode == 0, done.stdout + done.stderr
    results = results_of(out)["results"]
    assert len(results) == 2 * len(names) > 0
    assert sorted((r["user"], r["notebook"]) for r in results) == sorted(
        (user, name) for user in ("alice", "bob") for name in names
    )
    # two users share two cores: SLOW (and FAST) are reported, never an error
    assert [r for r in results if r["verdict"] == "ERROR"] == []
    assert all(r["errors"] == [] and r["differences"] == [] for r in results)
    for r in results:
        print(f"{r['user']} {r['notebook']}: {r['verdict']} {r['seconds']:.1f} s")
        assert f"[{r['user']}] {r['notebook']} {r['verdict']} " in done.stdout
    junit = ElementTree.parse(out / "junit.xml").getroot()
    cases = junit.findall("./testsuite/testcase")
    assert len(cases) == 2 * len(names)
    assert junit.get("tests") == str(2 * len(names)) and junit.get("errors") == "0"
    assert not junit.findall(".//error") and not junit.findall(".//failure")
    assert (out / "notebooks" / "bob" / names[0]).is_file()
    assert f"{2 * len(names)} results:" in done.stdout and "0 ERROR" in done.stdout


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_run_leaves_no_files_no_kernels_and_servers_as_it_found_them(platform, tokens, full_run):
    assert server_model(platform, "alice", tokens["alice"])["ready"]  # found running: left so
    assert "Benchmark" not in root_listing(platform, "alice", tokens["alice"])
    assert kernels(platform, "alice", tokens["alice"]) <= full_run["kernels_before"]
    assert server_model(platform, "bob", tokens["bob"]) is None  # started by it: stopped
    assert "[bob] server stopped" in full_run["done"].stdout


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_a_broken_notebook_and_a_wrong_output_are_errors_that_show_why(
    platform, tokens, tokens_file, alice_running, tmp_path, capsys
):
    copy_short(tmp_path, "07-broken.ipynb", break_cell=3)
    copy_short(tmp_path, "07-wrong.ipynb")
    wrong = short_entry()
    wrong["outputs"] = {**wrong["outputs"], "python": {"equals": "2.7"}}
    suite = write_suite(tmp_path, {"07-broken.ipynb": short_entry(), "07-wrong.ipynb": wrong})
    out = tmp_path / "out"
    status, stdout, _ = run_cli(
        capsys, "--hub", platform.url, "--tokens", str(tokens_file), "--users", "1",
        "--notebooks", str(suite), "--out", str(out),
    )  # fmt: skip
    assert status == 1
    broken, wrong_result = results_of(out)["results"]
    assert broken["verdict"] == "ERROR"
    assert broken["detail"] == "cell 3: RuntimeError: deliberately broken"
    assert [c["cell"] for c in broken["cells"]] == [2, 3]  # stopped at the error
    assert broken["cells"][-1]["status"] == "error"
    assert "deliberately broken" in broken["cells"][-1]["traceback"]
    assert (
        "[alice] 07-broken.ipynb ERROR" in stdout and "RuntimeError: deliberately broken" in stdout
    )
    assert wrong_result["verdict"] == "ERROR"
    assert wrong_result["detail"] == "output differs: python: expected '2.7', got '3.11'"
    junit = ElementTree.parse(out / "junit.xml").getroot()
    assert "deliberately broken" in junit.find(".//testcase[@name='07-broken.ipynb']/error").text
    assert junit.find(".//testcase[@name='07-wrong.ipynb']/failure") is not None


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_impossible_times_are_slow_and_fast_failing_only_with_strict(
    platform, tokens, tokens_file, alice_running, tmp_path, capsys
):
    copy_short(tmp_path, "07-slow.ipynb")
    copy_short(tmp_path, "07-fast.ipynb")
    suite = write_suite(
        tmp_path,
        {"07-slow.ipynb": short_entry(seconds=0.01), "07-fast.ipynb": short_entry(seconds=100000)},
    )
    common = [
        "--hub",
        platform.url,
        "--tokens",
        str(tokens_file),
        "--users",
        "1",
        "--notebooks",
        str(suite),
    ]
    status, stdout, _ = run_cli(capsys, *common, "--out", str(tmp_path / "out"))
    assert status == 0
    assert [r["verdict"] for r in results_of(tmp_path / "out")["results"]] == ["SLOW", "FAST"]
    assert "07-slow.ipynb SLOW" in stdout and "07-fast.ipynb FAST" in stdout

    status, _, _ = run_cli(
        capsys, *common, "--strict", "--only", "07-slow", "--out", str(tmp_path / "strict")
    )
    assert status == 1
    junit = ElementTree.parse(tmp_path / "strict" / "junit.xml").getroot()
    assert junit.find(".//failure").get("type") == "SLOW"


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_notebook_over_its_timeout_is_an_error_and_its_kernel_is_removed(
    platform, tokens, tokens_file, alice_running, tmp_path, capsys
):
    before = kernels(platform, "alice", tokens["alice"])
    status, stdout, _ = run_cli(
        capsys, "--hub", platform.url, "--tokens", str(tokens_file), "--users", "1",
        "--only", SHORT, "--timeout", "2", "--out", str(tmp_path),
    )  # fmt: skip
    assert status == 1
    (result,) = results_of(tmp_path)["results"]
    assert result["verdict"] == "ERROR" and result["detail"].startswith("timed out after 2 s")
    assert kernels(platform, "alice", tokens["alice"]) <= before
    assert "Benchmark" not in root_listing(platform, "alice", tokens["alice"])


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_refused_token_exits_2_naming_the_user(platform, tmp_path, capsys):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice 0123456789abcdef\n")
    status, stdout, err = run_cli(
        capsys, "--hub", platform.url, "--tokens", str(tokens), "--out", str(tmp_path)
    )
    assert status == 2
    assert "the hub refused the token of alice" in err
    assert "Traceback" not in err and "[alice] starting" not in stdout


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_an_unreachable_hub_exits_2_with_one_clear_line(tokens_file, tmp_path):
    hub = f"http://127.0.0.1:{free_port()}/"
    done = subprocess.run(
        [sys.executable, "-m", "aglais_hub.cli", "benchmark", "--hub", hub,
         "--tokens", str(tokens_file), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"aglais-hub benchmark: cannot reach the hub at {hub}: Connection refused"
    ]


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_refused_spawn_is_an_error_for_each_notebook_with_the_hubs_reason(
    platform, tmp_path, capsys
):
    # guests get the default tier (basic): one server at a time, here a named one
    platform.set_user("gail", ["guests"])
    gail = log_in(platform, "gail")
    assert gail.start_server("extra").get("ready")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"gail {gail.new_token('benchmark test')}\n")
    try:
        status, stdout, _ = run_cli(
            capsys, "--hub", platform.url, "--tokens", str(tokens), "--only", SHORT,
            "--out", str(tmp_path / "out"),
        )  # fmt: skip
    finally:
        gail.session.delete(
            gail.url("hub/api/users/gail/servers/extra"), headers=gail.xsrf_headers()
        )
    assert status == 1
    (result,) = results_of(tmp_path / "out")["results"]
    assert result["verdict"] == "ERROR"
    assert "the hub refused to start gail's server: 429:" in result["detail"]
    assert "allows 1 running server" in result["detail"]
    assert "allows 1 running server" in stdout
