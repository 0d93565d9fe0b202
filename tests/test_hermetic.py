"""The suite starts what it needs and never leans on the machine's default ports.

tests/conftest.py holds 8000, 8001, 8081, 8090 and 5432 open for the whole session
(`_hold_default_ports`), so any test that reached for one of them fails. These tests
check the holding itself and that the tests' PostgreSQL is their own.
"""

from __future__ import annotations

import socket

import psycopg

from tests.conftest import DEFAULT_PORTS


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_every_default_port_is_taken_while_the_suite_runs():
    assert DEFAULT_PORTS
    for port in DEFAULT_PORTS:
        assert listening(port), f"port {port} is free: the suite does not hold it"
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port))
            except OSError:
                continue
            raise AssertionError(f"port {port} could be bound: nothing holds it")


def test_the_tests_postgresql_is_started_by_the_tests_on_a_port_of_its_own(postgres_db):
    assert ":5432/" not in postgres_db
    with psycopg.connect(postgres_db) as db:
        data_dir = db.execute("SHOW data_directory").fetchone()[0]
        db.execute("CREATE TABLE t (x int)")
        db.execute("INSERT INTO t VALUES (1)")
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    assert "aglais-pg-" in data_dir, data_dir
