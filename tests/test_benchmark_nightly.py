"""`aglais-hub benchmark-nightly` (aglais_hub/benchmark/nightly.py), the chart's CronJob's
command: its pure parts (pruning, the index, the summary, the tokens file), then end to
end against a demo platform of its own whose values enable the benchmark for alice (the
session's shared demo has no benchmark service): the service token makes alice's tokens
and no one else's (403 from the real hub), a run of the short notebook PASSes, writes
index.html and latest.json, prunes runs beyond --keep, leaves no token behind, and its
counts and seconds are gauges on the reservation service's /metrics."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from aglais_hub.benchmark import nightly
from aglais_hub.benchmark.nightly import (
    Minted,
    index_html,
    prune,
    run_dirs,
    run_summary,
    token_lifetime,
    tokens_text,
    write_private,
)
from aglais_hub.hubconfig import BENCHMARK_TOKEN_ENV
from aglais_hub.reservations.benchmark import parse_summary
from aglais_hub.reservations.rules import Refused
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import Platform, demo_values

SHORT = "07-library-versions.ipynb"
E2E_AUTH = {"allowedGroups": ["users", "power", "guests"]}  # as tests/conftest.py's
NOTE = nightly.TOKEN_NOTE


# -- pure parts -----------------------------------------------------------------------------


def make_run(reports: Path, run_id: str, status: int = 0, passed: int = 1) -> Path:
    """A finished run's folder as nightly leaves it (its summary, a report)."""
    folder = reports / run_id
    folder.mkdir(parents=True)
    when = datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    results = {"counts": {"PASS": passed, "SLOW": 0, "FAST": 0, "ERROR": 0}, "results": []}
    summary = run_summary(run_id, results, when, when, status, ["alice"])
    (folder / nightly.SUMMARY_JSON).write_text(json.dumps(summary))
    (folder / "report.html").write_text("<html></html>")
    return folder


def test_prune_keeps_the_newest_runs_and_nothing_else_is_touched(tmp_path):
    ids = ["20261128-020000-aaaaaa", "20261130-020000-bbbbbb", "20261201-020000-cccccc"]
    for run_id in ids:
        make_run(tmp_path, run_id)
    (tmp_path / "notes").mkdir()  # not a run: never pruned
    (tmp_path / "index.html").write_text("old")
    removed = prune(tmp_path, 2)
    assert [p.name for p in removed] == [ids[0]]
    assert [p.name for p in run_dirs(tmp_path)] == [ids[2], ids[1]]
    assert (tmp_path / "notes").is_dir() and (tmp_path / "index.html").exists()
    assert prune(tmp_path, 2) == []


def test_the_index_lists_runs_newest_first_with_counts_and_links(tmp_path):
    make_run(tmp_path, "20261130-020000-bbbbbb", status=1, passed=3)
    make_run(tmp_path, "20261201-020000-cccccc", status=0, passed=7)
    page = nightly.write_index(tmp_path).read_text()
    newer, older = page.index("20261201-020000-cccccc"), page.index("20261130-020000-bbbbbb")
    assert newer < older
    assert 'href="20261201-020000-cccccc/report.html"' in page
    assert "passed" in page and "failed" in page
    assert "<td class='n'>7</td>" in page and "<td class='n'>3</td>" in page
    empty = index_html([], {})
    assert "no runs yet" in empty
    hostile = index_html([("20261201-020000-cccccc", {"message": "<script>x</script>"})], {})
    assert "<script>x" not in hostile and "&lt;script&gt;" in hostile


def test_the_summary_counts_every_verdict_and_a_run_that_could_not_start():
    now = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    results = {
        "counts": {"PASS": 1, "ERROR": 1},
        "results": [
            {"user": "alice", "notebook": SHORT, "verdict": "PASS", "seconds": 9.5, "cells": []},
            {"user": "alice", "notebook": "x.ipynb", "verdict": "ERROR", "seconds": None},
        ],
    }
    summary = run_summary("r", results, now, now, 1, ["alice"])
    assert summary["counts"] == {"PASS": 1, "SLOW": 0, "FAST": 0, "ERROR": 1}
    assert summary["results"][0] == {
        "user": "alice",
        "notebook": SHORT,
        "verdict": "PASS",
        "seconds": 9.5,
    }
    refused = run_summary("r", None, now, now, 2, ["bob"], "the hub would not make a token")
    assert refused["counts"] == {"PASS": 0, "SLOW": 0, "FAST": 0, "ERROR": 0}
    assert refused["exit_status"] == 2 and refused["message"].startswith("the hub would not")
    assert parse_summary(summary)["counts"]["ERROR"] == 1  # what the service takes
    # JSON's 7.0 is the integer the OpenAPI document asks for (the fuzzer sends it)
    taken = parse_summary({**summary, "exit_status": 1.0, "counts": {"ERROR": 7.0}})
    assert (taken["exit_status"], taken["counts"]["ERROR"]) == (1, 7)
    assert type(taken["counts"]["ERROR"]) is int and type(taken["exit_status"]) is int


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"exit_status": 3}, "'exit_status' must be 0, 1 or 2"),
        ({"exit_status": True}, "'exit_status' must be 0, 1 or 2"),
        ({"finished": "yesterday"}, "'finished' is not an ISO 8601 time"),
        ({"counts": {"MAYBE": 1}}, "'counts' must map verdicts"),
        ({"counts": {"PASS": -1}}, "'counts.PASS' must be a whole number"),
        ({"counts": {"PASS": 1.5}}, "'counts.PASS' must be a whole number"),
        ({"results": [{"user": "a", "notebook": "n", "verdict": "OK"}]}, "results[0].verdict"),
        ({"results": [{"user": "a\n", "notebook": "n", "verdict": "PASS"}]}, "results[0].user"),
        (
            {"results": [{"user": "a", "notebook": "n", "verdict": "PASS", "seconds": -1}]},
            "seconds",
        ),
        ({"extra": 1}, "Unknown field(s): extra"),
    ],
)
def test_the_service_refuses_a_summary_naming_the_field(change, message):
    now = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    good = run_summary("20261202-020000-abcdef", {"counts": {"PASS": 1}}, now, now, 0, ["a"])
    with pytest.raises(Refused) as refused:
        parse_summary({**good, **change})
    assert refused.value.status == 422 and message in refused.value.message


def test_the_tokens_file_is_private_and_tokens_outlive_the_run(tmp_path):
    path = write_private(tmp_path, "t.txt", tokens_text([Minted("alice", "s3cret", "a1")]))
    assert path.read_text() == "alice s3cret\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):  # never into a file someone else made
        write_private(tmp_path, "t.txt", "x")
    assert token_lifetime(3, 900, 600) == 600 + 3 * 900 + nightly.TOKEN_MARGIN


def test_no_service_token_exits_2_before_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != BENCHMARK_TOKEN_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "aglais_hub.cli", "benchmark-nightly", "--hub",
         "http://127.0.0.1:9/", "--reports", str(tmp_path / "r"), "--user", "alice"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and BENCHMARK_TOKEN_ENV in done.stderr
    assert not (tmp_path / "r").exists()


# -- end to end on a demo with the benchmark service ----------------------------------------


@pytest.fixture(scope="module")
def service_token() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def bench_platform(tmp_path_factory, service_token) -> Iterator[Platform]:
    """A demo whose values enable the benchmark for alice, its service token given as the
    chart's Secret gives it to the hub."""
    values = demo_values(auth=E2E_AUTH, benchmark={"enabled": True, "users": ["alice"]})
    p = Platform(
        tmp_path_factory.mktemp("nightly-platform"),
        values,
        env={BENCHMARK_TOKEN_ENV: service_token},
    )
    p.start()
    try:
        for user in ("alice", "bob"):  # hub users exist from their first login
            HubClient(p.url).login(user, user)
        yield p
    finally:
        p.stop()
        assert not p.leftover_ports(), p.leftover_ports()


@pytest.fixture(scope="module")
def admin_token(bench_platform) -> str:
    client = HubClient(bench_platform.url)
    client.login("admin", "admin")
    return client.new_token("nightly test admin")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def nightly_tokens(platform: Platform, admin: str, user: str) -> list[dict]:
    """``user``'s tokens the nightly run made (by their note), through the admin API."""
    response = requests.get(
        f"{platform.url}hub/api/users/{user}/tokens", headers=auth(admin), timeout=30
    )
    response.raise_for_status()
    return [t for t in response.json()["api_tokens"] if (t.get("note") or "").startswith(NOTE)]


def run_nightly(platform: Platform, token: str, reports: Path, *args: str):
    return subprocess.run(
        [sys.executable, "-m", "aglais_hub.cli", "benchmark-nightly", "--hub", platform.url,
         "--reports", str(reports), *args],
        capture_output=True, text=True, timeout=1200,
        env={**os.environ, BENCHMARK_TOKEN_ENV: token},
    )  # fmt: skip


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_the_service_may_make_tokens_for_listed_users_only(bench_platform, service_token):
    url = bench_platform.url + "hub/api/users/{}/tokens"
    body = {"note": "scope probe", "expires_in": 60, "scopes": ["read:users!user=bob"]}
    refused = requests.post(url.format("bob"), json=body, headers=auth(service_token), timeout=30)
    assert refused.status_code == 403, refused.text
    body["scopes"] = ["read:users!user=alice"]
    made = requests.post(url.format("alice"), json=body, headers=auth(service_token), timeout=30)
    assert made.status_code == 201, made.text
    # a token the service made for alice is alice's, with the scopes asked for
    whoami = requests.get(
        bench_platform.url + "hub/api/user", headers=auth(made.json()["token"]), timeout=30
    )
    assert whoami.json()["name"] == "alice"
    revoked = requests.delete(
        url.format("alice") + f"/{made.json()['id']}", headers=auth(service_token), timeout=30
    )
    assert revoked.status_code == 204
    # and it may not read anyone's server list, start servers or act as an admin
    for method, path in (
        ("GET", "hub/api/users"),
        ("POST", "hub/api/users/alice/server"),
        ("GET", "hub/api/users/bob"),
    ):
        answer = requests.request(
            method, bench_platform.url + path, headers=auth(service_token), timeout=30
        )
        assert answer.status_code in (403, 404), (method, path, answer.status_code)


@pytest.fixture(scope="module")
def nightly_run(bench_platform, service_token, tmp_path_factory) -> dict:
    """A nightly run of the short notebook for alice, onto reports holding two older runs
    with --keep 2 (so the oldest goes)."""
    reports = tmp_path_factory.mktemp("reports")
    make_run(reports, "20261101-020000-aaaaaa")
    make_run(reports, "20261102-020000-bbbbbb")
    done = run_nightly(
        bench_platform, service_token, reports, "--user", "alice", "--only", SHORT, "--keep", "2"
    )
    print(done.stdout, done.stderr, sep="\n")
    return {"done": done, "reports": reports}


@pytest.mark.e2e
@pytest.mark.timeout(1500)
def test_a_nightly_run_passes_and_keeps_its_reports(nightly_run):
    done, reports = nightly_run["done"], nightly_run["reports"]
    assert done.returncode == 0, done.stdout + done.stderr
    kept = [p.name for p in run_dirs(reports)]
    assert len(kept) == 2 and kept[1] == "20261102-020000-bbbbbb", kept  # the oldest pruned
    newest = reports / kept[0]
    latest = json.loads((reports / "latest.json").read_text())
    assert latest["run_id"] == kept[0] and latest["exit_status"] == 0
    assert latest["counts"] == {"PASS": 1, "SLOW": 0, "FAST": 0, "ERROR": 0}
    (result,) = latest["results"]
    assert (result["user"], result["notebook"], result["verdict"]) == ("alice", SHORT, "PASS")
    assert result["seconds"] > 0
    results = json.loads((newest / "results.json").read_text())  # the benchmark's own
    assert [r["verdict"] for r in results["results"]] == ["PASS"]
    assert (newest / "junit.xml").exists()
    page = (reports / "index.html").read_text()
    assert page.index(kept[0]) < page.index(kept[1]) and "20261101" not in page
    # no token in the job's log (a hub token is 32 hex digits; run ids carry 6)
    assert not re.search(r"\b[0-9a-f]{32,}\b", done.stdout + done.stderr)


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_nightly_run_leaves_no_token_behind(bench_platform, admin_token, nightly_run):
    assert nightly_run["done"].returncode == 0
    assert nightly_tokens(bench_platform, admin_token, "alice") == []
    tokens_files = list(Path(nightly_run["reports"]).rglob("tokens*"))
    assert tokens_files == []


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_the_metrics_show_the_runs_counts_and_seconds(bench_platform, admin_token, nightly_run):
    assert nightly_run["done"].returncode == 0
    text = requests.get(bench_platform.reservations_url + "metrics", timeout=30).text
    assert 'aglais_benchmark_results{verdict="PASS"} 1.0' in text
    assert 'aglais_benchmark_results{verdict="ERROR"} 0.0' in text
    assert "aglais_benchmark_exit_status 0.0" in text
    seconds = re.search(
        r'aglais_benchmark_notebook_seconds\{notebook="07-library-versions.ipynb",'
        r'user="alice",verdict="PASS"\} ([0-9.e+]+)',
        text,
    )
    assert seconds and float(seconds.group(1)) > 0, text
    stamp = float(re.search(r"aglais_benchmark_last_run_timestamp_seconds ([0-9.e+]+)", text)[1])
    assert abs(stamp - datetime.now(UTC).timestamp()) < 1200
    # the summary as the service keeps it: for admins and the benchmark service only
    api = bench_platform.reservations_url + "api/benchmark/latest"
    kept = requests.get(api, headers=auth(admin_token), timeout=30)
    assert kept.status_code == 200 and kept.json()["counts"]["PASS"] == 1
    alice = HubClient(bench_platform.url)
    alice.login("alice", "alice")
    alice_token = alice.new_token("alice's own")
    assert requests.get(api, headers=auth(alice_token), timeout=30).status_code == 403
    forged = requests.put(api, json=kept.json(), headers=auth(alice_token), timeout=30)
    assert forged.status_code == 403


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_a_refused_user_fails_the_run_and_revokes_the_tokens_made_before(
    bench_platform, service_token, admin_token, nightly_run, tmp_path
):
    assert nightly_run["done"].returncode == 0  # after the passing run's checks
    done = run_nightly(bench_platform, service_token, tmp_path, "--user", "alice", "--user", "bob")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "would not make a token for bob" in done.stderr and "403" in done.stderr
    assert nightly_tokens(bench_platform, admin_token, "alice") == []  # alice's revoked
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["exit_status"] == 2 and "bob" in latest["message"]
    assert "did not run" in (tmp_path / "index.html").read_text()
    text = requests.get(bench_platform.reservations_url + "metrics", timeout=30).text
    assert "aglais_benchmark_exit_status 2.0" in text
    assert "aglais_benchmark_notebook_seconds{" not in text  # the earlier run's are gone
