"""`aglais-hub reservations list|cancel|export` on a real bookings database (SQLite),
run as the admin would run them: as a command."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from aglais_hub.reservations.ledger import Caller, Ledger
from aglais_hub.reservations.settings import settings_from_values
from aglais_hub.reservations.store import Store
from tests.reservation_values import reservation_values


@pytest.fixture
def setup(tmp_path: Path) -> tuple[list[str], list]:
    values = reservation_values()
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    store = Store(url)
    store.migrate()
    ledger = Ledger(store, settings_from_values(values))
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    admin = Caller("admin", admin=True)
    made = [
        ledger.create(
            admin, size="small", start=start, end=start + timedelta(hours=1), title=title, user=user
        )
        for user, title in (("alice", "DR3, join"), ("bob", "Gaia"))
    ]
    store.dispose()
    base = [
        sys.executable,
        "-m",
        "aglais_hub.cli",
        "reservations",
        "--values",
        str(values_file),
        "--db-url",
        url,
    ]
    return base, made


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_list_shows_every_booking_and_filters(setup) -> None:
    base, made = setup
    out = run([*base, "list"]).stdout
    assert out.splitlines()[0].split()[:4] == ["ID", "USER", "SIZE", "STATE"]
    assert "alice" in out and "bob" in out and "DR3, join" in out
    only = run([*base, "list", "--user", "bob"]).stdout
    assert "bob" in only and "alice" not in only


def test_cancel_changes_the_state_and_reports_unknown_ids(setup) -> None:
    base, made = setup
    done = run([*base, "cancel", str(made[0].id), "999"])
    assert f"cancelled booking {made[0].id} of alice (r{made[0].id})" in done.stdout
    assert "booking 999: You have no booking 999." in done.stderr
    assert done.returncode == 1
    cancelled = run([*base, "list", "--state", "cancelled"]).stdout
    assert "alice" in cancelled and "bob" not in cancelled


def test_export_json_and_csv(setup, tmp_path: Path) -> None:
    base, made = setup
    exported = json.loads(run([*base, "export"]).stdout)
    assert [r["id"] for r in exported["reservations"]] == [b.id for b in made]
    assert exported["reservations"][0]["server_name"] == f"r{made[0].id}"
    target = tmp_path / "bookings.csv"
    assert run([*base, "export", "--format", "csv", "-o", str(target)]).returncode == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [(r["user"], r["title"]) for r in rows] == [("alice", "DR3, join"), ("bob", "Gaia")]


def test_a_bad_values_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("reservations: {capacity: {cores: many}}\n")
    result = run(
        [sys.executable, "-m", "aglais_hub.cli", "reservations", "--values", str(bad), "list"]
    )
    assert result.returncode == 1 and "reservations.capacity" in result.stderr
