"""Which repository URLs we accept, and the credentials that go with them.

Accepted: ``https://host[:port]/path`` and, for tests and local mirrors only,
``http://`` to a loopback host, both with a personal access token; and SSH URLs,
``ssh://[user@]host[:port]/path`` (``git+ssh://`` is read as ``ssh://``) and scp-like
``[user@]host:path``, with a deploy key the service generates per link (`SshKey`).
Refused with a message: anything carrying credentials (``https://user:token@host/...``:
a token in a URL ends up in .git/config, shell history and logs; a password in an SSH
URL likewise), query strings and fragments (some servers take tokens there), a host,
user or path starting with '-' (ssh would read it as an option), ``file://``,
``ext::`` and local paths.
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
_SSH_SCHEMES = ("ssh://", "git+ssh://", "ssh+git://")
_SSH_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
_HOST = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$|^\[[0-9A-Fa-f:.]+\]$")


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
    scheme: str = "https"  # "https", "http" or "ssh"
    user: str | None = None  # the SSH user (e.g. "git"); None for HTTP(S)
    port: int | None = None
    path: str = ""

    @property
    def is_ssh(self) -> bool:
        return self.scheme == "ssh"

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
        if lowered.startswith(_SSH_SCHEMES) or ("://" not in url and _SCP_LIKE.match(url)):
            return cls._parse_ssh(url)
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
        return cls(
            url=urllib.parse.urlunsplit((scheme, netloc, parts.path, "", "")),
            host=host,
            scheme=scheme,
            port=port,
            path=parts.path,
        )

    @classmethod
    def _parse_ssh(cls, url: str) -> RemoteUrl:
        """``ssh://[user@]host[:port]/path`` or scp-like ``[user@]host:path``."""
        if "://" in url:
            rest = url.split("://", 1)[1]
            authority, slash, path = rest.partition("/")
            path = slash + path
            if "?" in path or "#" in path:
                raise InvalidRepositoryUrl(
                    "The repository URL must not have a '?' query or '#' fragment.",
                    url=_without_userinfo(url),
                )
            user, at, hostport = authority.rpartition("@")
            if at and ":" in user:
                raise InvalidRepositoryUrl(
                    f"The repository URL {_without_userinfo(url)} contains a password. "
                    "SSH links use the deploy key the hub makes for them: give the URL "
                    "without it.",
                )
            host, port = hostport, None
            if hostport.startswith("["):  # [v6 address][:port]
                close = hostport.find("]")
                host, tail = hostport[: close + 1], hostport[close + 1 :]
                if close < 0 or (tail and not tail.startswith(":")):
                    raise InvalidRepositoryUrl(f"{url} is not a valid repository URL.")
                port_text = tail[1:] if tail else None
            else:
                host, colon, port_text = hostport.partition(":")
                port_text = port_text if colon else None
            if port_text is not None:
                if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                    raise InvalidRepositoryUrl(
                        f"{_without_userinfo(url)} has a port that is not a number from 1 to 65535."
                    )
                port = int(port_text)
            scp = False
        else:
            authority, _, path = url.partition(":")  # _SCP_LIKE matched: one ':' first
            user, at, host = authority.rpartition("@")
            port, scp = None, True
        user = user if at else None
        if not host:
            raise InvalidRepositoryUrl(f"{url} names no host.")
        if not _HOST.match(host) or (user is not None and not _SSH_USER.match(user)):
            raise InvalidRepositoryUrl(
                f"{_without_userinfo(url)} is not a valid SSH repository URL: the user and "
                "host may hold letters, digits, '.', '_' and '-' (not first)."
            )
        if path.strip("/") == "" or path.lstrip("/").startswith("-") or path.startswith("-"):
            raise InvalidRepositoryUrl(f"{url} names a host but no repository.", url=url)
        if scp:
            shown = f"{user + '@' if user else ''}{host}:{path}"
        else:
            netloc = f"{user + '@' if user else ''}{host}{'' if port is None else f':{port}'}"
            shown = f"ssh://{netloc}{path}"
        return cls(
            url=shown,
            host=host.strip("[]"),
            scheme="ssh",
            user=user,
            port=port,
            path=path,
        )

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


@dataclass(frozen=True)
class SshKey:
    """A link's deploy key: the private half in OpenSSH format (never in ``repr()``;
    it reaches ssh only as a 0600 file that lives for one git call) and the public line
    the user adds to their Git host."""

    private_key: str = field(repr=False)
    public_key: str = ""

    def __post_init__(self) -> None:
        if "PRIVATE KEY" not in self.private_key:
            raise ValueError("an SSH key must be a private key in OpenSSH format")
