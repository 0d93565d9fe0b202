"""Linking a user's Git repository: clone or fetch, import notebooks, commit and push back.

``git`` holds :class:`WorkingCopy`, which drives the system ``git`` CLI on one local clone;
``errors`` the exceptions a caller maps to HTTP statuses; ``remote`` the URL rules and the
credentials, which reach git only through our askpass program (``askpass``), never in a
URL, an argument or a file.
"""

from .errors import (
    AuthenticationFailed,
    BranchNotFound,
    GitSyncError,
    HostUnreachable,
    InvalidPath,
    InvalidRepositoryUrl,
    MergeConflict,
    PathNotFound,
    PushRejected,
    RepositoryNotFound,
)
from .git import Author, NotebookEntry, PushResult, SyncStatus, WorkingCopy
from .remote import Credentials, RemoteUrl, SshKey

__all__ = [
    "Author",
    "AuthenticationFailed",
    "BranchNotFound",
    "Credentials",
    "GitSyncError",
    "HostUnreachable",
    "InvalidPath",
    "InvalidRepositoryUrl",
    "MergeConflict",
    "NotebookEntry",
    "PathNotFound",
    "PushRejected",
    "PushResult",
    "RemoteUrl",
    "RepositoryNotFound",
    "SshKey",
    "SyncStatus",
    "WorkingCopy",
]
