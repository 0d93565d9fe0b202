"""Import and commit: a link's working copy, the user's server and the import records.

The steps are in the order a user would do them by hand, and each decision is
`sync`'s (pure). An import reads the notebooks from the remote branch as just fetched
and writes them into the caller's server, never over a note the user changed
(`sync.plan_import`). A commit reads the caller's notebooks from their server and
commits them on the commit they were imported from (`git.WorkingCopy.commit`'s
``base``), so that a change pushed by someone else since is merged, or conflicts and
keeps the user's version on a branch of its own (`WorkingCopy.pull_and_retry`), and is
never silently overwritten. The server is reached with the caller's own token
(`contents.ContentsClient`); git with the link's token.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aglais_hub.reservations.rules import Refused

from .contents import ContentsClient, ContentsNotFound
from .errors import CredentialUnreadable, PushRejected
from .git import Author, NotebookEntry, PushResult, WorkingCopy
from .models import ImportRecord, Link
from .remote import Credentials, SshKey
from .service import Service
from .sync import (
    Action,
    ImportStep,
    notebook_bytes,
    plan_import,
    repo_path_of,
    repository_folder,
    server_path,
    without_outputs,
)
from .vault import VaultError

PATHS_MAX = 200  # notebooks one request may import or commit
DEFAULT_USERNAME = "aglais"  # most hosts take any user name with a token
NO_EMAIL_DOMAIN = "users.noreply.invalid"  # for a provider that gives no e-mail


def author_of(name: str, user_info: dict | None) -> Author:
    """Who a commit is by: the identity provider's name and e-mail (the hub keeps them in
    the user's ``user_info``), else the hub user's name and an address that cannot
    receive mail."""
    info = user_info or {}
    return Author(info.get("name") or name, info.get("email") or f"{name}@{NO_EMAIL_DOMAIN}")


def chosen_paths(data: dict, field: str = "paths") -> list[str]:
    """The request's list of paths: 1 to PATHS_MAX distinct strings; `Refused` (422)."""
    paths = data.get(field)
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise Refused(422, f"'{field}' must be a non-empty list of notebook paths.")
    if len(paths) > PATHS_MAX:
        raise Refused(422, f"'{field}' may name at most {PATHS_MAX} notebooks at once.")
    return list(dict.fromkeys(paths))


@dataclass(frozen=True)
class Committed:
    """What a commit did: its id (None when nothing changed), and the push's result."""

    commit: str | None
    push: PushResult | None

    def as_json(self, words: str) -> dict:
        return {
            "commit": self.commit,
            "pushed": bool(self.push and self.push.pushed),
            "rebased": bool(self.push and self.push.rebased),
            "head": self.push.commit if self.push else None,
            "message": words,
        }


class Transfers:
    """One working copy per link (`WorkingCopy` serialises its own git calls), under
    ``<workdir>/<user>/<link id>``."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._copies: dict[int, WorkingCopy] = {}

    def working_copy(self, link: Link) -> WorkingCopy:
        """The link's clone, with its current credentials (a PATCH may have changed them)."""
        copy = self._copies.get(link.id)
        if copy is None or copy.url != link.url or copy.branch != link.branch:
            path = Path(self.service.settings.workdir) / link.user / str(link.id)
            copy = WorkingCopy(path, link.url, link.branch)
            self._copies[link.id] = copy
        try:
            if copy.remote.is_ssh:
                key = self.service.key_of(link)
                copy.credentials = SshKey(key, link.public_key or "") if key else None
                return copy
            token = self.service.token_of(link)
        except VaultError as error:  # a transfer fails as git would: a GitSyncError
            raise CredentialUnreadable(str(error), link.url) from None
        copy.credentials = Credentials(link.username or DEFAULT_USERNAME, token) if token else None
        return copy

    def remove(self, link: Link) -> None:
        """Forget a removed link's clone and delete it from disk (it holds the user's
        repository)."""
        self._copies.pop(link.id, None)
        path = Path(self.service.settings.workdir) / link.user / str(link.id)
        shutil.rmtree(path, True)
        WorkingCopy.known_hosts_of(path).unlink(missing_ok=True)

    # -- reading the repository ------------------------------------------------------------

    async def notebooks(self, link: Link) -> list[NotebookEntry]:
        """The Jupyter notebooks under the link's folder on the remote branch, fetched now.
        Zeppelin notes are listed by the git layer too; they need a Zeppelin server to
        go into, which this service cannot write to yet, so they are left out here."""
        copy = self.working_copy(link)
        await copy.clone_or_fetch()
        found = await copy.list_notebooks(link.folder)
        return [entry for entry in found if entry.kind == "jupyter"]

    # -- import ----------------------------------------------------------------------------

    async def import_notebooks(
        self, link: Link, contents: ContentsClient, paths: Sequence[str]
    ) -> list[ImportStep]:
        """Import ``paths`` (repository paths under the link's folder) into the caller's
        server (``contents``), each as `sync.plan_import` decides; every step is said."""
        copy = self.working_copy(link)
        await copy.clone_or_fetch()
        available = {entry.path: entry for entry in await copy.list_notebooks(link.folder)}
        missing = [p for p in paths if p not in available or available[p].kind != "jupyter"]
        if missing:
            where = f"folder '{link.folder}'" if link.folder else "repository"
            raise Refused(
                404,
                f"No Jupyter notebook {', '.join(missing[:5])} in the linked {where} on "
                f"'{link.branch}' of {link.url}.",
            )
        head = await copy.remote_head()
        records = await self.service.db(self.service.store.imports, link.id, contents.server)
        recorded = {r.written_to: r for r in records}
        steps = []
        for repo_path in paths:
            entry = available[repo_path]
            target = server_path(repo_path, link.folder, link.url)
            record = recorded.get(target)
            current = await self._current_sha(contents, target)
            step = plan_import(
                repo_path,
                entry.blob,
                target,
                (record.blob_id, record.sha256) if record else None,
                current,
            )
            if step.writes:
                notebook = json.loads(await copy.read_file(repo_path))
                await contents.ensure_dir(str(PurePosixPath(step.target).parent))
                written = await contents.put_notebook(step.target, notebook)
                if step.action is not Action.KEPT_BOTH:  # the user's own file stays theirs
                    await self._record(link, contents.server, repo_path, entry.blob, head, written)
            steps.append(step)
        return steps

    @staticmethod
    async def _current_sha(contents: ContentsClient, target: str) -> str | None:
        try:
            return (await contents.get_notebook(target)).sha256 or ""
        except ContentsNotFound:
            return None

    async def _record(
        self, link: Link, server: str, repo_path: str, blob: str, commit: str, written: object
    ) -> ImportRecord:
        return await self.service.db(
            self.service.store.record_import,
            link.id,
            server,
            repo_path,
            blob,
            commit,
            written.sha256 or "",  # type: ignore[attr-defined]
            written.path,  # type: ignore[attr-defined]
            self.service.clock(),
        )

    # -- commit and push -------------------------------------------------------------------

    async def commit_notebooks(
        self,
        link: Link,
        contents: ContentsClient,
        targets: Sequence[str],
        message: str,
        author: Author,
        pull: bool = False,
    ) -> Committed:
        """Commit the caller's notebooks ``targets`` (paths in their server, inside the
        repository's folder there) and push. A push the remote refuses because it moved
        raises PushRejected, unless ``pull``: then the remote's changes are merged in
        and the push retried (MergeConflict when they cannot be: the user's version is
        then on a branch of its own)."""
        if not message.strip():
            raise Refused(422, "'message' must say what the commit changes.")
        try:
            repo_paths = {t: repo_path_of(t, link.folder, link.url) for t in targets}
        except ValueError as error:
            raise Refused(422, f"{error}.") from None
        copy = self.working_copy(link)
        await copy.clone_or_fetch()
        records = await self.service.db(self.service.store.imports, link.id, contents.server)
        bases = [r for r in records if r.written_to in repo_paths]
        files, read = {}, {}
        for target, repo_path in repo_paths.items():
            notebook = await contents.get_notebook(target)
            content = without_outputs(notebook.content) if link.strip_outputs else notebook.content
            files[repo_path] = notebook_bytes(content)
            read[target] = notebook
        # the oldest import among them: what every one of these versions was edited from
        base = min(bases, key=lambda r: r.imported_at).commit_id if bases else None
        commit = await copy.commit(files, message, author, base=base)
        if commit is None and base is None:
            return Committed(None, None)
        try:
            pushed = await copy.push()
        except PushRejected:
            if not pull:
                raise
            pushed = await copy.pull_and_retry(link.user, author)
        # the pushed versions are now what the server's files were "imported" from
        entries = {e.path: e for e in await copy.list_notebooks(link.folder, ref=pushed.commit)}
        for target, repo_path in repo_paths.items():
            entry = entries.get(repo_path)
            if entry is not None:
                await self._record(
                    link, contents.server, repo_path, entry.blob, pushed.commit, read[target]
                )
        return Committed(commit, pushed)


def commit_words(link: Link, done: Committed) -> str:
    """What a commit did, in words."""
    where = f"'{link.branch}' of {link.url}"
    if done.commit is None and not (done.push and done.push.pushed):
        return f"Nothing to commit: {where} already has these versions."
    how = " after bringing in the changes made there since" if done.push.rebased else ""
    return f"Committed and pushed to {where}{how}."


__all__ = [
    "Committed",
    "Transfers",
    "author_of",
    "chosen_paths",
    "commit_words",
    "repository_folder",
]
