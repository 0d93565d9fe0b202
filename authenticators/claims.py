"""Pure helpers that turn identity-provider claims into hub usernames and groups."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_EDGES = "-._"
MAX_USERNAME_LENGTH = 63


def claim_at(user_info: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted claim path (``realm_access.roles``), or None if absent."""
    value: Any = user_info
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def safe_username(raw: Any) -> str:
    """A hub username made from a claim value, or "" when nothing usable remains.

    Lower-cased, accents folded to ASCII, every run of characters outside
    ``[a-z0-9._-]`` replaced by one '-', no leading or trailing punctuation,
    at most 63 characters (so it also fits a Kubernetes name).
    """
    if not isinstance(raw, str):
        return ""
    folded = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    name = _UNSAFE.sub("-", folded.strip().lower()).strip(_EDGES)
    return name[:MAX_USERNAME_LENGTH].rstrip(_EDGES)


def claim_groups(user_info: Mapping[str, Any], path: str) -> set[str]:
    """The groups in a claim: a list of strings, or one string; anything else is no group."""
    value = claim_at(user_info, path)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return set()
    return {g for g in value if isinstance(g, str) and g}


def person(user_info: Mapping[str, Any]) -> dict[str, str]:
    """The user's display name and e-mail from the provider's standard claims (``name``,
    ``email``), each only where it is one clean line; what services show and sign with."""
    found = {}
    for key in ("name", "email"):
        value = user_info.get(key)
        if isinstance(value, str) and value.strip() and not any(c in value for c in "\r\n\0<>"):
            found[key] = value.strip()
    return found


# -- identities: which identity-provider account a hub user belongs to ---------------------
#
# A hub username is made from a claim that is neither unique nor stable (see safe_username:
# 'ALICE', 'álice' and 'alice' all become 'alice'). The identity an account belongs to is
# the provider's stable subject instead: the value of the subject claim ('sub') of one
# issuer. An identity is recorded as {"issuer", "claim", "subject"}.


def issuer_id(issuer: str) -> str:
    """An issuer URL as identities record it (a trailing '/' does not make another issuer)."""
    return issuer.rstrip("/")


def login_identity(user_info: Mapping[str, Any], issuer: str, claim: str) -> dict | None:
    """The identity a userinfo document proves, or None without a usable subject claim.

    The subject is a non-empty string (numbers, which some providers send, are written as
    decimal strings); anything else is no subject.
    """
    subject = claim_at(user_info, claim)
    if isinstance(subject, int) and not isinstance(subject, bool):
        subject = str(subject)
    if not isinstance(subject, str) or not subject:
        return None
    return {"issuer": issuer_id(issuer), "claim": claim, "subject": subject}


def recorded_identity(
    auth_state: Mapping[str, Any] | None,
    issuer: str,
    claim: str,
    *,
    key: str = "aglais",
    user_info_key: str = "oauth_user",
) -> dict | None:
    """The identity an existing hub user's auth_state binds it to; None if unbound.

    The binding is ``auth_state[key]["identity"]``. A user whose auth_state predates
    bindings is bound to the identity of its last login, as that login's userinfo
    (``auth_state[user_info_key]``) shows it, at the issuer configured now. A user
    without auth_state (created by an admin, never logged in) is unbound.
    """
    if not isinstance(auth_state, Mapping):
        return None
    ours = auth_state.get(key)
    identity = ours.get("identity") if isinstance(ours, Mapping) else None
    if isinstance(identity, Mapping) and identity.get("subject"):
        return {
            "issuer": str(identity.get("issuer", "")),
            "claim": str(identity.get("claim", "")),
            "subject": str(identity["subject"]),
        }
    user_info = auth_state.get(user_info_key)
    if isinstance(user_info, Mapping):
        return login_identity(user_info, issuer, claim)
    return None


def same_identity(
    recorded: Mapping[str, Any], login: Mapping[str, Any], previous_issuers: Iterable[str] = ()
) -> bool:
    """Whether a login's identity is the one an account is bound to.

    Claim and subject must be equal, and the issuer too, except that a binding made at
    one of ``previous_issuers`` (the provider's former URLs) counts as made at the login's.
    """
    fields = ("claim", "subject")
    if any(recorded.get(f) != login.get(f) for f in fields):
        return False
    issuer = recorded.get("issuer")
    return issuer == login.get("issuer") or issuer in {issuer_id(i) for i in previous_issuers}
