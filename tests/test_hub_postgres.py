"""The hub keeps its state in PostgreSQL as well as in SQLite."""

from __future__ import annotations

import psycopg
import pytest

from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import Platform, demo_values

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_hub_on_postgresql_records_users_groups_and_encrypted_auth_state(tmp_path, postgres_db):
    platform = Platform(tmp_path / "pg", demo_values(hub={"db": {"url": postgres_db}}))
    platform.start()
    try:
        bob = HubClient(platform.url)
        bob.login("bob", "bob")
        assert sorted(bob.whoami()["groups"]) == ["power", "users"]
    finally:
        platform.stop()
    with psycopg.connect(postgres_db) as db:
        cur = db.cursor()
        cur.execute(
            "SELECT g.name FROM groups g JOIN user_group_map m ON m.group_id = g.id "
            "JOIN users u ON u.id = m.user_id WHERE u.name = 'bob' ORDER BY g.name"
        )
        assert [row[0] for row in cur.fetchall()] == ["power", "users"]
        cur.execute("SELECT encrypted_auth_state FROM users WHERE name = 'bob'")
        stored = bytes(cur.fetchone()[0])
        # auth_state (tokens, tier) is stored, and not as readable text
        assert stored and b"power" not in stored and b"access_token" not in stored
    # a restart on the same database still knows bob
    platform.start()
    try:
        admin = HubClient(platform.url)
        admin.login("admin", "admin")
        bob_model = admin.get("hub/api/users/bob").json()
        assert bob_model["auth_state"]["aglais"]["tier"] == "power"
    finally:
        platform.stop()
