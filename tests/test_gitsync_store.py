"""The Git service's database and its domain rules, on SQLite and on PostgreSQL: links
belong to their user, tokens are sealed, imports are remembered per place written."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aglais_hub.gitsync.rules import NewLink
from aglais_hub.gitsync.service import Caller, Service
from aglais_hub.gitsync.settings import Settings
from aglais_hub.gitsync.store import Store
from aglais_hub.gitsync.vault import Vault
from aglais_hub.reservations.rules import Refused

pytestmark = pytest.mark.postgres

ALICE, BOB, ADMIN = Caller("alice"), Caller("bob"), Caller("admin", admin=True)


@pytest.fixture
def service(any_db: str, tmp_path: Path) -> Service:
    store = Store(any_db)
    store.migrate()
    store.migrate()  # idempotent
    settings = Settings(8091, any_db, tmp_path / "work", "http://127.0.0.1:8000/")
    yield Service(store, Vault([secrets.token_bytes(32)]), settings)
    store.dispose()


def new(folder: str = "", token: str = "t0ken") -> NewLink:
    return NewLink("https://example.org/org/repo.git", "main", folder, token, None, False)


def status_of(fn, *args) -> int:  # noqa: ANN001
    with pytest.raises(Refused) as caught:
        fn(*args)
    return caught.value.status


def test_a_link_is_its_owners_and_admins_may_see_and_remove_it(service: Service):
    link = service.create_link(ALICE, new())
    assert [x.id for x in service.list_links(ALICE)] == [link.id]
    assert service.list_links(BOB) == []
    for call in (service.get_link, service.delete_link, service.own_link):
        assert status_of(call, BOB, link.id) == 404
    assert status_of(service.list_links, BOB, "alice") == 403
    assert [x.id for x in service.list_links(ADMIN, "alice")] == [link.id]
    assert status_of(service.own_link, ADMIN, link.id) == 403  # admins remove, not use
    assert service.delete_link(ADMIN, link.id).id == link.id
    assert status_of(service.get_link, ALICE, link.id) == 404


def test_the_token_is_sealed_for_its_owner_and_changes_replace_it(service: Service):
    link = service.create_link(ALICE, new(token="first-token"))
    assert "first-token" not in link.token_sealed
    assert service.token_of(link) == "first-token"
    changed = service.change_link(ALICE, link.id, {"token": "second-token", "branch": "dev"})
    assert (changed.branch, service.token_of(changed)) == ("dev", "second-token")
    assert changed.updated_at >= link.updated_at
    assert "token" not in changed.as_json() and changed.as_json()["has_token"] is True


def test_the_same_repository_branch_and_folder_is_linked_once(service: Service):
    first = service.create_link(ALICE, new("nb"))
    assert status_of(service.create_link, ALICE, new("nb")) == 409
    other = service.create_link(ALICE, new("other"))
    assert status_of(service.change_link, ALICE, other.id, {"folder": "nb"}) == 409
    assert service.create_link(BOB, new("nb")).id not in (first.id, other.id)


def test_imports_are_remembered_per_place_and_go_with_their_link(service: Service):
    store = service.store
    link = service.create_link(ALICE, new())
    when = datetime(2026, 12, 1, 10, tzinfo=UTC)
    store.record_import(
        link.id, "", "nb/a.ipynb", "b" * 40, "e" * 40, "1" * 64, "gaia/a.ipynb", when
    )
    later = when + timedelta(hours=1)
    store.record_import(
        link.id, "", "nb/a.ipynb", "c" * 40, "f" * 40, "2" * 64, "gaia/a.ipynb", later
    )
    store.record_import(
        link.id, "lab", "nb/a.ipynb", "c" * 40, "f" * 40, "3" * 64, "gaia/a.ipynb", later
    )
    records = store.imports(link.id, "")
    assert [(r.blob_id, r.commit_id, r.sha256, r.imported_at) for r in records] == [
        ("c" * 40, "f" * 40, "2" * 64, later)
    ]
    assert len(store.imports(link.id)) == 2
    service.delete_link(ALICE, link.id)
    assert store.imports(link.id) == []
