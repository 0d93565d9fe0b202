"""The Git service's domain: who may see, change and remove which link. No HTTP.

The handlers (``app.py``, ``page.py``) turn requests into these calls and `Refused`
into responses. A link of another user is a 404, as if it did not exist; admins may
list and remove anyone's links, but change only their own. Database work runs in a
small thread pool (`Service.db`) so the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aglais_hub.reservations.rules import Refused

from .contents import ContentsClient
from .models import Link
from .remote import RemoteUrl
from .rules import LINKS_PER_USER_MAX, NewLink
from .settings import Settings
from .sshkey import comment_for, generate
from .store import Store
from .vault import Vault

log = logging.getLogger("aglais.gitsync")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caller:
    """Who asks: a hub user (maybe an admin) or a hub service (``service:<name>``)."""

    name: str
    admin: bool = False
    is_service: bool = False

    @classmethod
    def from_model(cls, model: dict) -> Caller:
        """From the hub's identify model (``admin`` comes with ``read:users:name``, which
        every token has for its own user)."""
        if model.get("kind") == "service":
            return cls(f"service:{model['name']}", is_service=True)
        return cls(model["name"], admin=bool(model.get("admin")))


class Service:
    """Links: the store, the vault that seals their tokens, and the settings."""

    def __init__(
        self,
        store: Store,
        vault: Vault,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.vault = vault
        self.settings = settings
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="db")

    async def db(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the database pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, partial(fn, *args, **kwargs))

    # -- reading ---------------------------------------------------------------------------

    def list_links(self, caller: Caller, user: str | None = None) -> list[Link]:
        """The caller's links; an admin's: everyone's, or ``user``'s."""
        if caller.admin:
            return self.store.links(user)
        if user is not None and user != caller.name:
            raise Refused(403, "Only administrators may list other users' links.")
        return self.store.links(caller.name)

    def get_link(self, caller: Caller, link_id: int) -> Link:
        """The link, if the caller owns it or is an admin; 404 otherwise."""
        link = self.store.link(link_id)
        if link is None or not (link.user == caller.name or caller.admin):
            raise Refused(404, f"You have no link {link_id}.")
        return link

    def own_link(self, caller: Caller, link_id: int) -> Link:
        """The caller's own link (what changing, importing and committing need)."""
        link = self.get_link(caller, link_id)
        if link.user != caller.name:
            raise Refused(
                403,
                "Administrators may list and remove other users' links, not use or change them.",
            )
        return link

    def token_of(self, link: Link) -> str | None:
        """The link's token in clear, for git (never for a response or a log)."""
        if link.token_sealed is None:
            return None
        return self.vault.open(link.token_sealed, link.user)

    def key_of(self, link: Link) -> str | None:
        """An SSH link's private deploy key in clear, for git (never for a response or a
        log)."""
        if link.key_sealed is None:
            return None
        return self.vault.open(link.key_sealed, link.user)

    # -- changing --------------------------------------------------------------------------

    def create_link(self, caller: Caller, new: NewLink) -> Link:
        if caller.is_service:
            raise Refused(403, "Only hub users link repositories.")
        if self.store.count_links(caller.name) >= LINKS_PER_USER_MAX:
            raise Refused(
                409, f"You have {LINKS_PER_USER_MAX} links, the most one user may have: remove one."
            )
        self._refuse_duplicate(caller.name, new.url, new.branch, new.folder)
        now = self.clock()
        link = self.store.add_link(
            Link(
                user=caller.name,
                url=new.url,
                branch=new.branch,
                folder=new.folder,
                strip_outputs=new.strip_outputs,
                username=new.username,
                token_sealed=None if new.token is None else self.vault.seal(new.token, caller.name),
                created_at=now,
                updated_at=now,
            )
        )
        if RemoteUrl.parse(link.url).is_ssh:
            # the key's comment names the link, so its id first
            private, public = generate(comment_for(caller.name, link.id))
            sealed = self.vault.seal(private, caller.name)
            del private
            changed = self.store.change_link(
                link.id, {"key_sealed": sealed, "public_key": public}, now
            )
            link = changed if changed is not None else link
        log.info("%s linked %s, branch %s (link %d)", caller.name, link.url, link.branch, link.id)
        return link

    def change_link(self, caller: Caller, link_id: int, changes: dict[str, Any]) -> Link:
        """Apply checked ``changes`` (rules.link_changes) to the caller's own link."""
        link = self.own_link(caller, link_id)
        if RemoteUrl.parse(link.url).is_ssh:
            for field in ("token", "username"):
                if changes.get(field) is not None:
                    raise Refused(
                        422,
                        f"'{field}' is not used with an SSH link: it reaches the repository "
                        "with the deploy key shown on its page.",
                    )
            changes = {k: v for k, v in changes.items() if k not in ("token", "username")}
        columns = {k: v for k, v in changes.items() if k != "token"}
        if "token" in changes:
            columns["token_sealed"] = self.vault.seal(changes["token"], link.user)
        branch, folder = columns.get("branch", link.branch), columns.get("folder", link.folder)
        self._refuse_duplicate(link.user, link.url, branch, folder, exclude=link.id)
        changed = self.store.change_link(link.id, columns, self.clock())
        if changed is None:
            raise Refused(404, f"You have no link {link_id}.")
        log.info("%s changed link %d: %s", caller.name, link.id, ", ".join(sorted(changes)))
        return changed

    def delete_link(self, caller: Caller, link_id: int) -> Link:
        link = self.get_link(caller, link_id)
        if not self.store.delete_link(link.id):
            raise Refused(404, f"You have no link {link_id}.")
        log.info("%s removed link %d of %s (%s)", caller.name, link.id, link.user, link.url)
        return link

    def _refuse_duplicate(
        self, user: str, url: str, branch: str, folder: str, exclude: int | None = None
    ) -> None:
        found = self.store.same_target(user, url, branch, folder, exclude)
        if found is not None:
            where = f"folder '{folder}'" if folder else "the top folder"
            raise Refused(409, f"Link {found.id} already links {url}, branch {branch}, {where}.")

    # -- users' servers --------------------------------------------------------------------

    def contents(self, caller: Caller, token: str, server: str = "") -> ContentsClient:
        """The caller's server ``server``, reached with the caller's own token."""
        return ContentsClient(self.settings.servers_url, caller.name, token, server)
