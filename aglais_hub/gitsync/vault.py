"""Tokens at rest: sealed with Fernet (AES-128-CBC and HMAC-SHA256), keyed from the
environment.

The key is ``AGLAIS_GITSYNC_KEY`` if set, else the hub's ``JUPYTERHUB_CRYPT_KEY``, in
JupyterHub's own format (``jupyterhub/crypto.py``): one or more 32-byte keys, each
hex (64 characters), URL-safe base64 (44) or raw, separated by ``;``. The first key
seals; every key opens, so keys rotate by putting the new one first.

A sealed token also names its owner: a token copied into another user's row of the
database does not open for them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_ENV = "AGLAIS_GITSYNC_KEY"
HUB_KEY_ENV = "JUPYTERHUB_CRYPT_KEY"
KEY_HELP = (
    f"Set {KEY_ENV} (or the hub's {HUB_KEY_ENV}) to one or more 32-byte keys, hex or "
    "base64, separated by ';' (make one with `openssl rand -hex 32`)."
)


class VaultError(Exception):
    """The keys are missing or malformed, or a sealed secret does not open."""


class KeyMissing(VaultError):
    def __init__(self) -> None:
        super().__init__(
            "The Git service stores access tokens encrypted and has no key to do it. " + KEY_HELP
        )


def raw_key(text: str) -> bytes:
    """A 32-byte key from its hex, base64 or raw form, as JupyterHub reads one (ValueError
    otherwise; the message never repeats the key)."""
    key = text.strip().encode("utf-8")
    if len(key) == 64:
        try:
            return binascii.a2b_hex(key)
        except binascii.Error:
            pass
    elif len(key) == 44:
        try:
            key = base64.urlsafe_b64decode(key)
        except binascii.Error:
            pass
    if len(key) != 32:
        raise ValueError("a key must be 32 bytes, hex or base64-encoded")
    return key


def keys_from_environ(environ: Mapping[str, str]) -> list[bytes]:
    """The keys from ``AGLAIS_GITSYNC_KEY``, else ``JUPYTERHUB_CRYPT_KEY``; KeyMissing
    when neither holds one, VaultError naming the variable when one is malformed."""
    for name in (KEY_ENV, HUB_KEY_ENV):
        parts = [part for part in environ.get(name, "").split(";") if part.strip()]
        if not parts:
            continue
        try:
            return [raw_key(part) for part in parts]
        except ValueError as error:
            raise VaultError(f"{name} holds a malformed key ({error}). {KEY_HELP}") from None
    raise KeyMissing()


class Vault:
    """Seals and opens secrets with the configured keys (MultiFernet)."""

    def __init__(self, keys: Sequence[bytes]):
        if not keys:
            raise KeyMissing()
        self._fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(key)) for key in keys])

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Vault:
        return cls(keys_from_environ(environ))

    def __repr__(self) -> str:
        return "Vault(<keys hidden>)"

    def seal(self, secret: str, owner: str) -> str:
        """``secret`` encrypted and authenticated, for ``owner`` only (ASCII text)."""
        plain = json.dumps({"owner": owner, "secret": secret}).encode("utf-8")
        return self._fernet.encrypt(plain).decode("ascii")

    def open(self, sealed: str, owner: str) -> str:
        """The secret ``seal`` made for ``owner``; VaultError if no key opens it or it was
        sealed for someone else."""
        try:
            data = json.loads(self._fernet.decrypt(sealed.encode("ascii")))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise VaultError(
                "A stored token cannot be decrypted with the configured keys "
                "(was the key changed without keeping the old one?). Enter the token again."
            ) from None
        if not isinstance(data, dict) or data.get("owner") != owner:
            raise VaultError("A stored token belongs to another user; enter your token again.")
        return data["secret"]

    def reseal(self, sealed: str) -> str:
        """The same secret sealed with the first key (after a rotation)."""
        return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
