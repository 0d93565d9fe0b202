"""Deploy keys for SSH links: one Ed25519 key pair per link, made by the service.

The private half goes into the database sealed by the vault (``Link.key_sealed``) and
reaches ssh only as a 0600 file that lives for one git call (`git.WorkingCopy`); the
public half (``Link.public_key``, an ``authorized_keys`` line) is shown to the user, who
adds it to their Git host as a deploy key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def comment_for(user: str, link_id: int) -> str:
    """The public key's comment: whose key it is, for the Git host's list of keys."""
    safe = "".join(c if c.isprintable() and not c.isspace() else "_" for c in user)
    return f"aglais-hub {safe} link {link_id}"


def generate(comment: str) -> tuple[str, str]:
    """A new key pair: (private key in OpenSSH format, ``ssh-ed25519 AAAA... comment``)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, f"{public.decode('ascii')} {comment}"
