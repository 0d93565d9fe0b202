"""What a link may hold: the checks on every field a request sends. Pure.

Each check returns the clean value or raises `Refused` (422) whose message starts with
the field's name. No message ever quotes a token. Repository URLs follow the git
layer's own rules (`remote.RemoteUrl`), so a link the service accepts is one git can use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aglais_hub.reservations.rules import Refused

from .errors import InvalidRepositoryUrl
from .remote import RemoteUrl

URL_MAX = 1000
BRANCH_MAX = 255
FOLDER_MAX = 500
USERNAME_MAX = 255
TOKEN_MAX = 4096
LINKS_PER_USER_MAX = 100

CREATE_FIELDS = ("url", "branch", "folder", "token", "username", "strip_outputs")
CHANGE_FIELDS = ("branch", "folder", "token", "username", "strip_outputs")
# characters git refuses anywhere in a ref name (git check-ref-format)
_REF_FORBIDDEN = "~^:?*[\\"


def _control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def _string(value: object, field: str, limit: int, what: str) -> str:
    if not isinstance(value, str):
        raise Refused(422, f"'{field}' must be {what} (a string).")
    if len(value) > limit:
        raise Refused(422, f"'{field}' is longer than {limit} characters.")
    return value


def check_url(value: object) -> str:
    """A repository URL: https://, http:// to this machine, or SSH (ssh://, scp-like
    git@host:path); no token or password in it."""
    url = _string(value, "url", URL_MAX, "the repository's HTTPS or SSH URL")
    try:
        return str(RemoteUrl.parse(url))
    except InvalidRepositoryUrl as refused:
        raise Refused(422, f"'url': {refused.message}") from None


def branch_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Git branch (git check-ref-format's rules), or None."""
    if not name:
        return "is empty"
    if name in ("@", "HEAD"):
        return f"may not be {name!r}"
    if name.startswith("-"):
        return "may not start with '-'"
    if " " in name:
        return "may not contain spaces"
    if _control(name):
        return "may not contain control characters"
    for char in _REF_FORBIDDEN:
        if char in name:
            return f"may not contain {char!r}"
    for bad in ("..", "@{", "//"):
        if bad in name:
            return f"may not contain {bad!r}"
    if name.startswith("/") or name.endswith("/"):
        return "may not start or end with '/'"
    if name.endswith("."):
        return "may not end with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return "may not have a part starting with '.'"
        if part.endswith(".lock"):
            return "may not have a part ending in '.lock'"
    return None


def check_branch(value: object) -> str:
    """A branch name git accepts."""
    name = _string(value, "branch", BRANCH_MAX, "a Git branch name")
    problem = branch_problem(name)
    if problem:
        shown = name if len(name) <= 60 else name[:60] + "…"
        raise Refused(422, f"'branch' {problem}: {shown!r} is not a Git branch name.")
    return name


def check_folder(value: object) -> str:
    """A folder inside the repository, as ``a/b`` ("" is the repository's top)."""
    path = _string(value, "folder", FOLDER_MAX, "a folder inside the repository")
    if _control(path):
        raise Refused(422, "'folder' may not contain control characters.")
    if "\\" in path:
        raise Refused(422, "'folder' separates folders with '/', not '\\'.")
    if path.startswith("/"):
        raise Refused(422, "'folder' is relative to the repository's top: no leading '/'.")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Refused(422, "'folder' may not contain '..': it must stay inside the repository.")
    if any(part.lower() == ".git" for part in parts):
        raise Refused(422, "'folder' may not be inside .git.")
    return "/".join(parts)


def check_username(value: object) -> str | None:
    """The user name for HTTPS (None: any name, which most hosts accept with a token)."""
    if value is None or value == "":
        return None
    name = _string(value, "username", USERNAME_MAX, "a user name at the Git host")
    if _control(name) or ":" in name or name != name.strip():
        raise Refused(
            422, "'username' may not contain ':', control characters or surrounding spaces."
        )
    return name


def check_token(value: object) -> str:
    """A personal access token: one line of text. Never quoted back."""
    if not isinstance(value, str) or not value.strip():
        raise Refused(422, "'token' must be your personal access token (a non-empty string).")
    token = value.strip()  # pasted tokens often bring a newline along
    if len(token) > TOKEN_MAX:
        raise Refused(422, f"'token' is longer than {TOKEN_MAX} characters.")
    if _control(token) or any(c.isspace() for c in token):
        raise Refused(422, "'token' may not contain spaces or control characters.")
    return token


def check_strip_outputs(value: object) -> bool:
    if not isinstance(value, bool):
        raise Refused(422, "'strip_outputs' must be true or false.")
    return value


def _unknown(data: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if "url" in unknown and "url" not in allowed:
        raise Refused(
            422, "'url' cannot be changed: remove the link and link the repository again."
        )
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:10])
        raise Refused(422, f"Unknown field(s): {shown}; a link has {', '.join(allowed)}.")


@dataclass(frozen=True)
class NewLink:
    """A valid request for a link (the token still in clear: the service seals it).
    An SSH link has no token (None): the service makes it a deploy key."""

    url: str
    branch: str
    folder: str
    token: str | None
    username: str | None
    strip_outputs: bool

    def __repr__(self) -> str:  # never the token
        return f"NewLink(url={self.url!r}, branch={self.branch!r}, folder={self.folder!r})"


def new_link(data: dict) -> NewLink:
    """A POST body checked field by field: url and branch are required, and a token
    for an HTTPS URL; an SSH URL takes no token or user name (it gets a deploy key)."""
    _unknown(data, CREATE_FIELDS)
    for field in ("url", "branch"):
        if field not in data:
            raise Refused(422, f"'{field}' is missing.")
    url = check_url(data["url"])
    ssh = RemoteUrl.parse(url).is_ssh
    if ssh:
        for field in ("token", "username"):
            if data.get(field) not in (None, ""):
                raise Refused(
                    422,
                    f"'{field}' is not used with an SSH URL: the hub makes a deploy key for "
                    "the link and shows its public half to add to your Git host. Leave "
                    f"'{field}' out, or give the repository's HTTPS URL with a token.",
                )
    elif "token" not in data:
        raise Refused(422, "'token' is missing.")
    return NewLink(
        url=url,
        branch=check_branch(data["branch"]),
        folder=check_folder(data.get("folder", "")),
        token=None if ssh else check_token(data["token"]),
        username=None if ssh else check_username(data.get("username")),
        strip_outputs=check_strip_outputs(data.get("strip_outputs", False)),
    )


CHECKS = {
    "branch": check_branch,
    "folder": check_folder,
    "token": check_token,
    "username": check_username,
    "strip_outputs": check_strip_outputs,
}


def link_changes(data: dict) -> dict[str, Any]:
    """A PATCH body checked: the fields it changes, clean (``url`` cannot change)."""
    _unknown(data, CHANGE_FIELDS)
    if not data:
        raise Refused(422, f"Send at least one of {', '.join(CHANGE_FIELDS)} to change.")
    return {field: CHECKS[field](value) for field, value in data.items()}
