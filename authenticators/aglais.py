"""AglaisOAuthenticator: OpenID Connect login with groups, admin rights and tiers."""

from __future__ import annotations

import time
from typing import Any

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Bool, Dict, Int, List, Unicode, default

from aglais_hub.offering import resolve_tier

from .claims import (
    claim_at,
    claim_groups,
    login_identity,
    person,
    recorded_identity,
    safe_username,
    same_identity,
)
from .discovery import DiscoveryError, fetch_provider_config

AUTH_STATE_KEY = "aglais"
# How long a first login's claim on an unbound name is held in memory, until the hub
# has written the binding into the new user's auth_state (closes a race of two first logins).
PENDING_BINDING_SECONDS = 30.0


class AglaisOAuthenticator(GenericOAuthenticator):
    """Log users in through an OpenID Connect provider found by discovery.

    An admin configures the issuer, client id and secret; the endpoints come from
    ``<issuer>/.well-known/openid-configuration``. The provider's groups become
    JupyterHub groups at every login (and before every spawn), members of
    ``admin_groups`` become admins, only members of ``allowed_groups`` get in,
    and each user's tier is stored in the encrypted ``auth_state`` under
    ``auth_state["aglais"]["tier"]`` for the spawners to read.

    Usernames are normalised (see ``safe_username``), so distinct identities can
    arrive at one name ('ALICE', 'álice' and 'alice' are all 'alice'). Each hub user
    is therefore bound to one identity, the provider's subject (``subject_claim`` of
    ``issuer``), recorded at its first login in ``auth_state["aglais"]["identity"]``;
    a login whose name is bound to another identity is refused with a 403 that tells
    the administrator what to do. Users an admin creates stay unbound until their
    first login; users from before bindings are bound to their last login's subject.
    """

    issuer = Unicode(
        config=True,
        help="Issuer URL of the OpenID Connect provider; its endpoints are found by discovery.",
    )
    groups_claim = Unicode(
        "groups",
        config=True,
        help="Dotted path of the userinfo claim holding the user's groups (list or string).",
    )
    tier_groups = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        config=True,
        help="Group name → tier name.",
    )
    tier_ranks = Dict(
        key_trait=Unicode(),
        value_trait=Int(),
        config=True,
        help="Tier name → rank; a user gets the highest-ranked tier any of their groups maps to.",
    )
    default_tier = Unicode(
        "basic", config=True, help="Tier of users none of whose groups maps to a tier."
    )
    scope = List(
        Unicode(),
        ["openid", "profile", "email", "groups"],
        config=True,
        help="Scopes requested at login.",
    )
    username_claim = Unicode(
        "preferred_username",
        config=True,
        help="Dotted path of the userinfo claim that names the user; normalised to [a-z0-9._-].",
    )
    subject_claim = Unicode(
        "sub",
        config=True,
        help="""Dotted path of the userinfo claim that identifies the user at the provider:
        unique and never reassigned (OIDC's ``sub``; e.g. ``oid`` for Entra ID across
        applications). Each hub user is bound to this claim's value at its first login,
        and a login whose username is bound to another value is refused. Changing it
        (or ``issuer``) makes existing bindings stale: those users are refused until an
        administrator clears them (see ``previous_issuers`` for a moved provider).""",
    )
    previous_issuers = List(
        Unicode(),
        config=True,
        help="""Former issuer URLs of the same provider (same subjects): accounts bound
        at one of them are accepted at ``issuer`` and re-bound to it at the next login.
        Only for a provider whose URL changed; never list a different provider.""",
    )
    manage_groups = Bool(True, config=True, help="Keep JupyterHub groups equal to the provider's.")
    enable_auth_state = Bool(
        True, config=True, help="Keep tokens, the tier and the identity binding in auth_state."
    )
    enable_pkce = Bool(True, config=True, help="Use PKCE (S256) in the authorization code flow.")

    _provider_config: dict | None = None
    # username → (identity, monotonic deadline): first logins of unbound names in flight
    _pending_bindings = Dict()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.enable_auth_state:
            self.log.warning(
                "AglaisOAuthenticator.enable_auth_state is off: hub users cannot be bound to "
                "their provider's subject, so distinct identities whose usernames normalise "
                "alike (ALICE, álice, alice) would share one account."
            )

    @default("login_service")
    def _login_service_default(self) -> str:
        return "your institution"

    @default("refresh_pre_spawn")
    def _refresh_pre_spawn_default(self) -> bool:
        return True

    @default("auth_state_groups_key")
    def _auth_state_groups_key_default(self) -> str:
        return f"{self.user_auth_state_key}.{self.groups_claim}"

    def provider_config(self) -> dict:
        """The issuer's discovery document, read once; a 503 explains a failure to users."""
        if self._provider_config is None:
            if not self.issuer:
                raise web.HTTPError(500, "AglaisOAuthenticator.issuer is not configured")
            try:
                self._provider_config = fetch_provider_config(self.issuer, self.tls_verify)
            except DiscoveryError as e:
                self.log.error("OIDC discovery failed: %s", e)
                raise web.HTTPError(
                    503, f"The identity provider cannot be reached right now ({e}). Try again soon."
                ) from e
        return self._provider_config

    @default("authorize_url")
    def _authorize_url_default(self) -> str:
        return self.provider_config()["authorization_endpoint"]

    @default("token_url")
    def _token_url_default(self) -> str:
        return self.provider_config()["token_endpoint"]

    @default("userdata_url")
    def _userdata_url_default(self) -> str:
        return self.provider_config()["userinfo_endpoint"]

    def normalize_username(self, username: str) -> str:
        """Usernames are lower-case and limited to [a-z0-9._-] (see safe_username)."""
        return super().normalize_username(safe_username(username) or username)

    def user_info_to_username(self, user_info: dict) -> str:
        raw = claim_at(user_info, self.username_claim)
        if raw is None:
            raise web.HTTPError(
                403,
                f"Your identity provider did not send the '{self.username_claim}' claim, "
                "so the hub cannot name your account. Ask an administrator to check "
                "auth.usernameClaim and auth.scopes.",
            )
        if not safe_username(raw):
            raise web.HTTPError(
                403,
                f"The '{self.username_claim}' claim ({raw!r}) cannot be made into a username: "
                "it needs at least one letter or digit.",
            )
        return raw

    async def get_user_groups(self, auth_state: dict) -> set[str]:
        return claim_groups(auth_state.get(self.user_auth_state_key) or {}, self.groups_claim)

    async def update_auth_model(self, auth_model: dict) -> dict:
        auth_state = auth_model["auth_state"]
        groups = await self.get_user_groups(auth_state)
        tier = resolve_tier(groups, self.tier_groups, self.tier_ranks, self.default_tier)
        auth_state[AUTH_STATE_KEY] = {"tier": tier, "groups": sorted(groups)}
        # the hub keeps user_info in the user's model, readable with read:users:name (the
        # user's own tokens can): services such as Git sync sign commits with it
        auth_model["user_info"] = person(auth_state.get(self.user_auth_state_key) or {})
        return auth_model

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        if await super().check_allowed(username, auth_model):
            return True
        groups = sorted(
            ((auth_model or {}).get("auth_state") or {}).get(AUTH_STATE_KEY, {}).get("groups", [])
        )
        allowed = sorted(self.allowed_groups | self.admin_groups)
        yours = f"you are in: {', '.join(groups)}" if groups else "you are in no group"
        raise web.HTTPError(
            403,
            f"{username} may not use this hub: it admits members of "
            f"{', '.join(allowed) or 'no group'}, and {yours}. "
            "Ask an administrator to add you to one of those groups.",
        )

    # -- identities -----------------------------------------------------------------

    def login_identity(self, auth_model: dict) -> dict | None:
        """The identity (issuer, subject claim, subject) a login's userinfo proves."""
        user_info = (auth_model.get("auth_state") or {}).get(self.user_auth_state_key) or {}
        return login_identity(user_info, self.issuer, self.subject_claim)

    async def recorded_identity(self, user: Any) -> dict | None:
        """The identity an existing hub user is bound to, or None if it is unbound.

        Refuses (403) when the user has an auth_state the hub cannot decrypt: then it
        cannot tell whose account it is, and must not guess.
        """
        auth_state = await user.get_auth_state()
        if auth_state is None and getattr(user, "encrypted_auth_state", None) is not None:
            self.log.error("auth_state of %s cannot be decrypted: refusing its login", user.name)
            raise web.HTTPError(
                403,
                f"The hub cannot read which identity the account '{user.name}' belongs to "
                "(its stored auth_state cannot be decrypted), so it will not let anyone in "
                "as that account. Ask an administrator: restore the hub's JUPYTERHUB_CRYPT_KEY, "
                f"or clear the auth_state of the hub user '{user.name}' (PATCH "
                '/hub/api/users/<name> with {"auth_state": null}) so that its next login '
                "binds it again.",
            )
        return recorded_identity(
            auth_state,
            self.issuer,
            self.subject_claim,
            key=AUTH_STATE_KEY,
            user_info_key=self.user_auth_state_key,
        )

    def _held_binding(self, username: str) -> dict | None:
        """A first login's claim on an unbound name, still being written by the hub."""
        now = time.monotonic()
        for name, (_, deadline) in list(self._pending_bindings.items()):
            if deadline < now:
                del self._pending_bindings[name]
        held = self._pending_bindings.get(username)
        return held[0] if held else None

    def _refuse_other_identity(self, username: str, identity: dict, recorded: dict) -> None:
        self.log.warning(
            "Refused login as %s: the account is bound to %s %r of %s, this login is %s %r of %s",
            username,
            recorded["claim"],
            recorded["subject"],
            recorded["issuer"],
            identity["claim"],
            identity["subject"],
            identity["issuer"],
        )
        if (recorded["issuer"], recorded["claim"]) != (identity["issuer"], identity["claim"]):
            raise web.HTTPError(
                403,
                f"The account '{username}' was bound to its owner's {recorded['claim']!r} at "
                f"{recorded['issuer'] or 'another issuer'}, but you signed in with "
                f"{identity['claim']!r} at {identity['issuer']}, so the hub cannot tell whether "
                "it is yours. Ask an administrator: if the identity provider only moved to a "
                "new URL and kept its subjects, list the old URL in "
                "AglaisOAuthenticator.previous_issuers; otherwise restore auth.issuer and "
                f"auth.subjectClaim, or rename or delete the hub user '{username}'.",
            )
        raise web.HTTPError(
            403,
            f"The account name '{username}' is already used by another identity at your "
            f"identity provider (you signed in as {identity['claim']} '{identity['subject']}' "
            f"of {identity['issuer']}), and the hub never gives one account to two identities. "
            "Ask an administrator to resolve it: give your identity a username of its own at "
            "the identity provider, or set auth.usernameClaim to a claim that is unique for "
            f"everyone (this renames every account), or, if the account '{username}' now "
            f"belongs to you, rename or delete the hub user '{username}' in the admin panel "
            "so that your next login creates or claims it.",
        )

    async def bind_identity(self, handler: Any, auth_model: dict) -> dict:
        """Refuse a login whose username is bound to another identity; record the binding.

        Runs after the login was allowed, before the hub loads or creates the user: the
        user it finds by name is the one the login would become.
        """
        username = auth_model["name"]
        identity = self.login_identity(auth_model)
        if identity is None:
            raise web.HTTPError(
                403,
                f"Your identity provider did not send the '{self.subject_claim}' claim, so the "
                "hub cannot tell your account from anyone else's. Ask an administrator to "
                "check auth.subjectClaim and auth.scopes.",
            )
        find_user = getattr(handler, "find_user", None)
        if find_user is None:
            raise web.HTTPError(500, "The hub cannot check which identity an account belongs to.")
        user = find_user(username)
        recorded = await self.recorded_identity(user) if user is not None else None
        if recorded is None:
            recorded = self._held_binding(username)
        if recorded is not None and not same_identity(recorded, identity, self.previous_issuers):
            self._refuse_other_identity(username, identity, recorded)
        if recorded is None:
            self.log.info(
                "Binding %s to %s %r of %s",
                username,
                identity["claim"],
                identity["subject"],
                identity["issuer"],
            )
            deadline = time.monotonic() + PENDING_BINDING_SECONDS
            self._pending_bindings[username] = (identity, deadline)
        auth_model["auth_state"].setdefault(AUTH_STATE_KEY, {})["identity"] = identity
        return auth_model

    async def run_post_auth_hook(self, handler: Any, auth_model: dict) -> dict:
        auth_model = await super().run_post_auth_hook(handler, auth_model)
        return await self.bind_identity(handler, auth_model)

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        """Refresh as OAuthenticator does; keep the binding, and never move it.

        The refreshed userinfo comes from the user's own tokens, so its subject is the
        bound one; if it is not (the provider reassigned the token's account), the user
        must log in again, and that login is checked like any other.
        """
        refreshed = await super().refresh_user(user, handler, **kwargs)
        if not isinstance(refreshed, dict) or not refreshed.get("auth_state"):
            return refreshed
        recorded = await self.recorded_identity(user)
        if recorded is None:
            return refreshed
        identity = self.login_identity(refreshed)
        if identity is None or not same_identity(recorded, identity, self.previous_issuers):
            self.log.warning(
                "Refresh of %s returned another identity (%r, bound to %r): "
                "a new login is required",
                user.name,
                identity,
                recorded,
            )
            return False
        refreshed["auth_state"].setdefault(AUTH_STATE_KEY, {})["identity"] = identity
        return refreshed
