"""AglaisOAuthenticator: OpenID Connect login with groups, admin rights and tiers."""

from __future__ import annotations

from typing import Any

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Bool, Dict, Int, List, Unicode, default

from aglais_hub.quotas import resolve_tier

from .claims import claim_at, claim_groups, safe_username
from .discovery import DiscoveryError, fetch_provider_config

AUTH_STATE_KEY = "aglais"


class AglaisOAuthenticator(GenericOAuthenticator):
    """Log users in through an OpenID Connect provider found by discovery.

    An admin configures the issuer, client id and secret; the endpoints come from
    ``<issuer>/.well-known/openid-configuration``. The provider's groups become
    JupyterHub groups at every login (and before every spawn), members of
    ``admin_groups`` become admins, only members of ``allowed_groups`` get in,
    and each user's tier is stored in the encrypted ``auth_state`` under
    ``auth_state["aglais"]["tier"]`` for the spawners to read.
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
    manage_groups = Bool(True, config=True, help="Keep JupyterHub groups equal to the provider's.")
    enable_auth_state = Bool(True, config=True, help="Keep tokens and the tier in auth_state.")
    enable_pkce = Bool(True, config=True, help="Use PKCE (S256) in the authorization code flow.")

    _provider_config: dict | None = None

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
