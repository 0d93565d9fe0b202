"""What an import or a commit does to each notebook: pure decisions, no I/O.

A linked repository's notebooks land in the user's server in a folder named after the
repository (`repository_folder`), keeping their paths below the link's folder. Each
import is recorded (`models.ImportRecord`: the blob imported, the sha256 of the file
the server then held), so the next import can tell three things apart (`plan_import`):
the repository changed and the user did not (update it), the user changed it and the
repository did not (leave it: that is what a commit is for), and both changed (keep
both: the repository's version goes beside the user's, under a name that says which
it is). Nothing the user wrote is ever overwritten.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from urllib.parse import urlsplit

_UNSAFE = re.compile(r"[^\w. -]+")  # letters of any script stay


class Action(StrEnum):
    """What an import does with one notebook."""

    NEW = "new"  # not in the server: written
    UPDATE = "update"  # the repository changed, the user's copy did not: replaced
    UNCHANGED = "unchanged"  # nothing new in the repository: left as it is
    KEPT_BOTH = "kept-both"  # both changed, or a file of the user's is in the way


@dataclass(frozen=True)
class ImportStep:
    """One notebook's import: from ``repo_path`` to ``target`` in the server."""

    repo_path: str
    target: str
    action: Action
    words: str  # what the page and the API say about it

    @property
    def writes(self) -> bool:
        return self.action is not Action.UNCHANGED

    def as_json(self) -> dict:
        return {
            "repo_path": self.repo_path,
            "target": self.target,
            "action": self.action.value,
            "message": self.words,
        }


def repository_folder(url: str) -> str:
    """The server folder a repository's notebooks go into: its name (``gaia-notes`` for
    ``https://git.example.org/alice/gaia-notes.git``), made safe for a file name."""
    name = PurePosixPath(urlsplit(url).path.rstrip("/")).name
    name = name.removesuffix(".git")
    name = _UNSAFE.sub("-", name).strip(" .-")
    return name or "repository"


def relative_to_folder(repo_path: str, folder: str) -> str:
    """``repo_path`` below the link's ``folder``; ValueError for a path outside it."""
    if not folder:
        return repo_path
    prefix = folder.rstrip("/") + "/"
    if not repo_path.startswith(prefix):
        raise ValueError(f"{repo_path!r} is not in the linked folder {folder!r}")
    return repo_path[len(prefix) :]


def server_path(repo_path: str, folder: str, url: str) -> str:
    """Where a repository notebook goes in the user's server."""
    return f"{repository_folder(url)}/{relative_to_folder(repo_path, folder)}"


def repo_path_of(target: str, folder: str, url: str) -> str:
    """The repository path of a notebook in the server's repository folder (the inverse
    of `server_path`); ValueError for a notebook outside that folder."""
    prefix = repository_folder(url) + "/"
    if not target.startswith(prefix) or target == prefix:
        raise ValueError(
            f"'{target}' is not in the folder '{prefix.rstrip('/')}' that holds this "
            "repository's notebooks in your server"
        )
    rest = target[len(prefix) :]
    return f"{folder.rstrip('/')}/{rest}" if folder else rest


def beside(target: str, blob: str) -> str:
    """The name the repository's version gets beside a user's changed copy:
    ``notes/sky.ipynb`` → ``notes/sky (git 1a2b3c4).ipynb``."""
    path = PurePosixPath(target)
    return str(path.with_name(f"{path.stem} (git {blob[:7]}){path.suffix}"))


def plan_import(
    repo_path: str,
    blob: str,
    target: str,
    recorded: tuple[str, str] | None,
    current: str | None,
) -> ImportStep:
    """One notebook's import. ``recorded`` is the last import's (blob, sha256 written),
    or None; ``current`` the sha256 of the file at ``target`` in the server now, or None
    when there is none."""
    if current is None:
        return ImportStep(repo_path, target, Action.NEW, f"imported as {target}")
    if recorded is None:
        other = beside(target, blob)
        return ImportStep(
            repo_path,
            other,
            Action.KEPT_BOTH,
            f"{target} in your server was not imported from this repository, so it is "
            f"kept; the repository's version is {other}",
        )
    recorded_blob, written = recorded
    user_changed = current != written
    repo_changed = blob != recorded_blob
    if not repo_changed:
        words = "unchanged in the repository since the last import"
        if user_changed:
            words += "; your changes in the server are kept (commit them to push)"
        return ImportStep(repo_path, target, Action.UNCHANGED, words)
    if not user_changed:
        return ImportStep(repo_path, target, Action.UPDATE, f"updated {target}")
    other = beside(target, blob)
    return ImportStep(
        repo_path,
        other,
        Action.KEPT_BOTH,
        f"changed both in the repository and in your server: your version stays "
        f"{target}, the repository's is {other}",
    )


def without_outputs(notebook: dict) -> dict:
    """A copy of a Jupyter notebook with every code cell's outputs and execution count
    cleared (a link's "strip outputs" option)."""
    stripped = copy.deepcopy(notebook)
    for cell in stripped.get("cells") or []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return stripped


def notebook_bytes(notebook: dict) -> bytes:
    """A notebook's file as Jupyter writes it (one-space indent, sorted keys, a final
    newline), so commits diff cleanly against files saved by JupyterLab."""
    text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode()
