"""What can go wrong when talking to a user's Git repository, as exceptions a caller maps
to HTTP statuses (``status``) and whose message a scientist can act on.

Every message names the repository by its URL, which never carries credentials (URLs
with credentials are refused before git runs), and never contains the token or an SSH
link's private key: the classifier only ever quotes git's stderr after redacting the
token from it (ssh never prints the key).
"""

from __future__ import annotations


class GitSyncError(Exception):
    """Base class: a git operation on a linked repository failed; ``str()`` says why.

    ``status`` is the HTTP status a web handler should answer with; ``url`` the
    repository's URL (credential-free) when one is involved.
    """

    status = 502

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url


class InvalidRepositoryUrl(GitSyncError):
    """The URL is not one we accept: credentials inside it, an unsupported scheme
    (only https://, http:// to this machine, and SSH), or not a URL at all."""

    status = 400


class AuthenticationFailed(GitSyncError):
    """The Git server refused the token (wrong, expired, or not allowed to do this), or
    asked for one when none was given; for an SSH link, did not accept its deploy key
    (not added to the repository yet, or without write access)."""

    status = 403


class RepositoryNotFound(GitSyncError):
    """The server has no repository at that URL (or hides it from this token)."""

    status = 404


class BranchNotFound(GitSyncError):
    """The repository exists but has no such branch."""

    status = 404


class InvalidPath(GitSyncError):
    """A file or folder path that may not be used: absolute, leaving the repository
    (``..``, a symbolic link), inside ``.git``, or an invalid branch name."""

    status = 400


class PathNotFound(GitSyncError):
    """The file asked for is not in the repository at that branch."""

    status = 404


class HostUnreachable(GitSyncError):
    """The Git server could not be reached: unknown host name, connection refused or
    timed out, a TLS failure, or a server error."""

    status = 502


class PushRejected(GitSyncError):
    """The push was refused because the remote branch moved since the last pull (not a
    fast-forward); ``pull_and_retry`` is the way out."""

    status = 409


class MergeConflict(GitSyncError):
    """The user's commits and the remote's new commits change the same lines. The user's
    version was pushed to ``saved_branch`` (nothing is lost) and the remote branch was
    left as it was; ``paths`` are the conflicting files."""

    status = 409

    def __init__(self, message: str, url: str | None, saved_branch: str, paths: list[str]) -> None:
        super().__init__(message, url)
        self.saved_branch = saved_branch
        self.paths = paths


class CredentialUnreadable(GitSyncError):
    """The link's stored token or deploy key cannot be opened (the service's key changed
    without the old one kept, or it was sealed for someone else): the user enters it
    again."""

    status = 409
