"""What every Aglais spawner shares: the user's tier and the checks before a start.

`AglaisSpawnerMixin.prepare_start()` is the one place a spawner asks "may this
start run, and with what limits?". The reservation gate plugs in here.
"""

from __future__ import annotations

from jupyterhub.spawner import SpawnException
from traitlets import Dict, Unicode
from traitlets.config import LoggingConfigurable

from aglais_hub.quotas import Tier, tier_from_values
from authenticators.aglais import AUTH_STATE_KEY


class AglaisSpawnerMixin(LoggingConfigurable):
    """Tier lookup and per-tier limits for Aglais spawners (mix in before the Spawner)."""

    tiers = Dict(
        config=True,
        help="Tier name → limits, as in the values file's `tiers` (defaults filled in).",
    )
    default_tier = Unicode(
        "basic", config=True, help="Tier used when the user's auth_state names none."
    )

    tier: Tier | None = None

    async def user_tier(self) -> Tier:
        """The user's tier from auth_state (set at login), else the default tier."""
        auth_state = await self.user.get_auth_state() or {}
        name = (auth_state.get(AUTH_STATE_KEY) or {}).get("tier") or self.default_tier
        if name not in self.tiers:
            self.log.warning(
                "Tier %r of %s is not configured; using %r", name, self.user.name, self.default_tier
            )
            name = self.default_tier
        if name not in self.tiers:
            raise SpawnException(
                f"The hub has no tier {name!r} configured; ask an administrator.", reason="config"
            )
        return tier_from_values(name, self.tiers[name])

    def other_active_servers(self) -> list[str]:
        """This user's other servers that are running or starting, named for people."""
        return sorted(
            f"server '{name}'" if name else "your default server"
            for name, spawner in self.user.spawners.items()
            if spawner is not self and spawner.active
        )

    async def prepare_start(self) -> Tier:
        """Resolve the tier and refuse a start that breaks its limits, saying why."""
        tier = await self.user_tier()
        others = self.other_active_servers()
        if len(others) >= tier.concurrent_servers:
            plural = "" if tier.concurrent_servers == 1 else "s"
            verb = "is" if len(others) == 1 else "are"
            raise SpawnException(
                f"Your tier '{tier.display_name}' allows {tier.concurrent_servers} running "
                f"server{plural} at a time, and {', '.join(others)} {verb} already running. "
                "Stop one from the home page, then start this one again.",
                reason="quota",
                status_code=429,
            )
        self.tier = tier
        return tier
