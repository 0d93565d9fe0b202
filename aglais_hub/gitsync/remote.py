"""Which repository URLs we accept, and the credentials that go with them.

Accepted: ``https://host[:port]/path`` and, for tests and local mirrors only,
``http://`` to a loopback host. Refused with a message: anything carrying credentials
(``https://user:token@host/...``: a token in a URL ends up in .git/config, shell
history and logs), query strings and fragments (some servers take tokens there),
``ssh://`` and scp-like ``git@host:org/repo`` (SSH deploy keys come later; until then we
say so rather than letting git try), ``file://``, ``ext::`` and local paths.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field

from .errors import InvalidRepositoryUrl

# scp-like syntax git accepts: [user@]host:path, with no "://" before the colon
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?[^@/:]+:(?!//)")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _without_userinfo(url: str) -> str:
    """The URL with anything before '@' in its authority masked, for quoting it in an
    error without repeating a secret."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit((parts.scheme, "***@" + host, parts.path, "", ""))


@dataclass(frozen=True)
class RemoteUrl:
    """A repository URL we accept (see the module's docstring); ``str()`` is the URL,
    safe to show and to store."""

    url: str
    host: str

    @classmethod
    def parse(cls, text: str) -> RemoteUrl:
        """Check ``text`` and return it, or raise InvalidRepositoryUrl saying why."""
        url = text.strip()
        if not url:
            raise InvalidRepositoryUrl(
                "Give the repository's URL, e.g. https://github.com/org/repo.git."
            )
        if any(ord(c) < 0x21 or c == "\x7f" for c in url):
            raise InvalidRepositoryUrl(
                "The repository URL must not contain spaces or control characters."
            )
        lowered = url.lower()
        if lowered.startswith(("ssh://", "git+ssh://", "ssh+git://")) or (
            "://" not in url and _SCP_LIKE.match(url)
        ):
            raise InvalidRepositoryUrl(
                f"SSH URLs such as {_without_userinfo(url)} are not supported yet: give the "
                "repository's HTTPS URL and a personal access token.",
            )
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port  # raises on a port that is not a number
        except ValueError:
            raise InvalidRepositoryUrl(
                f"{_without_userinfo(url)} is not a valid repository URL."
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise InvalidRepositoryUrl(
                "Only https:// repository URLs are supported "
                f"(not {scheme + '://' if scheme else 'a local path'})."
            )
        if "@" in parts.netloc:
            # never quote what was before '@': it may be the token itself
            raise InvalidRepositoryUrl(
                f"The repository URL {_without_userinfo(url)} contains a user name or token. "
                "Give the URL without them (https://host/org/repo.git) and the token in "
                "its own field; a token inside a URL would be stored and shown with it.",
            )
        host = parts.hostname or ""
        if not host:
            raise InvalidRepositoryUrl(f"{url} names no host.")
        if parts.query or parts.fragment:
            raise InvalidRepositoryUrl(
                "The repository URL must not have a '?' query or '#' fragment: give just "
                "https://host/org/repo.git.",
                url=urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
            )
        if scheme == "http" and not _is_loopback(host):
            raise InvalidRepositoryUrl(
                f"{url} uses plain http://, which would send the token unencrypted: "
                "use the https:// URL.",
                url=url,
            )
        if parts.path.strip("/") == "":
            raise InvalidRepositoryUrl(f"{url} names a host but no repository.", url=url)
        netloc = host if port is None else f"{parts.netloc.rsplit(':', 1)[0]}:{port}"
        return cls(url=urllib.parse.urlunsplit((scheme, netloc, parts.path, "", "")), host=host)

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class Credentials:
    """A user name and a personal access token for HTTPS. The token never appears in
    ``repr()``; it reaches git only through the askpass program's environment."""

    username: str
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        for name, value in (("user name", self.username), ("token", self.token)):
            if not value or any(c in value for c in "\r\n\0"):
                raise ValueError(f"the {name} must be one non-empty line")
