"""What every Aglais spawner shares: the user's tier and the checks before a start.

`AglaisSpawnerMixin.prepare_start()` is the one place a spawner asks "may this
start run, and with what limits?": the tier's own limits, then the reservation
service's spawn gate (bookings and the queue for shared capacity).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from jupyterhub.spawner import SpawnException
from traitlets import Enum, Float, Instance, Unicode, default
from traitlets.config import LoggingConfigurable

from aglais_hub.offering import TIER_PROFILE, ClusterSize, Offering, Tier, sized
from aglais_hub.reservations.gate import alias_refusal, booking_id
from aglais_hub.text import display_text
from authenticators.aglais import AUTH_STATE_KEY

from .gate import UNREACHABLE_POLICIES, GateRefused, GateUnreachable, SpawnGateClient

T = TypeVar("T")
SPAWNER_OWN_OPTIONS = ("applied",)  # user_options keys only the spawner writes


class SpawnRefused(SpawnException):
    """A spawn refused for a reason the user can act on, in their words.

    The spawn page shows an exception's ``jupyterhub_message`` where it has one, else
    ``str()``, which for JupyterHub 6's SpawnException puts the status, class and reason
    label before the words ("503 SpawnException(reason=capacity): ..."); this one
    shows just the words."""

    def __init__(self, message: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)
        self.jupyterhub_message = message


class LaunchTimeout(SpawnRefused):
    """The server did not start within the launch timeout, once the gate let it through."""


def checked_user_options(options: object, offered: list[str]) -> dict:
    """``user_options`` as the spawner may use them, else ValueError saying why.

    They come from the spawn form (``options_from_form``: strings) or straight from
    the hub's REST API, where a user may POST any JSON object. ``profile`` must be
    absent, empty, or the name of an offered profile; keys the spawner writes itself
    (``applied``) are dropped.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError("The spawn options must be a JSON object.")
    profile = options.get("profile")
    choices = ", ".join(offered)
    if profile is not None and not isinstance(profile, str):
        kinds = {list: "a list", dict: "an object", bool: "true or false"}
        kind = kinds.get(type(profile), "a number")
        raise ValueError(
            f"The spawn option 'profile' must be the name of a size ({choices}), not {kind}."
        )
    if profile and profile not in offered:
        shown = display_text(profile, 60) or "?"
        raise ValueError(f"There is no size '{shown}' to start (sizes: {choices}).")
    return {k: v for k, v in options.items() if k not in SPAWNER_OWN_OPTIONS}


class AglaisSpawnerMixin(LoggingConfigurable):
    """Tier lookup and per-tier limits for Aglais spawners (mix in before the Spawner)."""

    offering = Instance(
        Offering,
        config=True,
        help="The tiers, sizes and Spark overhead of the values file, typed (the hub's "
        "config builds it once with aglais_hub.offering.offering_from_values).",
    )
    reservations_url = Unicode(
        "",
        config=True,
        help="Base URL of the reservation service (ends in /services/reservations/); "
        "empty turns the spawn gate off.",
    )
    reservations_token = Unicode(
        "", config=True, help="Hub API token of the spawn-gate service, sent to spawn-check."
    )
    queue_timeout = Float(
        600, config=True, help="Seconds an unbooked spawn waits in the queue before giving up."
    )
    launch_timeout = Float(
        0,
        config=True,
        help="Seconds a server may take to start once the spawn gate lets it through "
        "(spawner.startTimeout); 0 means start_timeout. The hub's start_timeout covers the "
        "queue too, so a queued spawn is not cut off while it waits its turn.",
    )
    queue_poll_interval = Float(
        1.0, config=True, help="Seconds between spawn-check calls while a spawn is queued."
    )
    when_unreachable = Enum(
        UNREACHABLE_POLICIES,
        default_value="allow-smallest",
        config=True,
        help="Unbooked spawns when the reservation service does not answer: allow-smallest "
        "(start with the smallest size the tier may use), allow, or refuse.",
    )

    tier: Tier | None = None
    gate_size: ClusterSize | None = None
    gate_booked: str | None = None  # the booked size's name, where the gate gave one
    _gate_messages: list[str]
    _gate_open = False

    @default("offering")
    def _offering_default(self) -> Offering:
        raise SpawnRefused(
            "The hub's tiers and sizes are not configured; ask an administrator.", reason="config"
        )

    async def user_tier(self) -> Tier:
        """The user's tier from auth_state (set at login), else the default tier."""
        tiers, fallback = self.offering.tiers, self.offering.default_tier
        auth_state = await self.user.get_auth_state() or {}
        name = (auth_state.get(AUTH_STATE_KEY) or {}).get("tier") or fallback
        if name not in tiers:
            self.log.warning(
                "Tier %r of %s is not configured; using %r", name, self.user.name, fallback
            )
            name = fallback
        if name not in tiers:
            raise SpawnRefused(
                f"The hub has no tier {name!r} configured; ask an administrator.", reason="config"
            )
        return tiers[name]

    def other_active_servers(self) -> list[str]:
        """This user's other servers that are running or starting, named for people."""
        return sorted(
            f"server '{name}'" if name else "your default server"
            for name, spawner in self.user.spawners.items()
            if spawner is not self and spawner.active
        )

    def offered_profiles(self) -> list[str]:
        """The profiles a spawn may name: the tier's own size, then the values' sizes."""
        return [TIER_PROFILE, *self.offering.sizes]

    def check_request(self) -> None:
        """Refuse malformed spawn options and server names that imitate a booking's
        (400, before anything else: the spawn gate never sees them)."""
        try:
            self.user_options = checked_user_options(self.user_options, self.offered_profiles())
        except ValueError as error:
            raise SpawnRefused(str(error), reason="options", status_code=400) from None
        refusal = alias_refusal(self.name) if self.reservations_url else None
        if refusal:
            raise SpawnRefused(refusal, reason="booking", status_code=400)

    async def prepare_start(self) -> Tier:
        """Resolve the tier and refuse a start that breaks its limits, saying why."""
        self.check_request()
        tier = await self.user_tier()
        others = self.other_active_servers()
        if len(others) >= tier.concurrent_servers:
            plural = "" if tier.concurrent_servers == 1 else "s"
            verb = "is" if len(others) == 1 else "are"
            raise SpawnRefused(
                f"Your tier '{tier.display_name}' allows {tier.concurrent_servers} running "
                f"server{plural} at a time, and {', '.join(others)} {verb} already running. "
                "Stop one from the home page, then start this one again.",
                reason="quota",
                status_code=429,
            )
        self.check_options(tier)  # refuse what can never start before queueing for capacity
        self.gate_size, self.gate_booked = None, None
        if self.reservations_url:
            size = await self.pass_gate(tier)
            if size is not None:
                self.gate_size = size
                tier = sized(tier, size) if booking_id(self.name) is not None else tier
        self.tier = tier
        return tier

    def check_options(self, tier: Tier) -> None:
        """Raise SpawnException for spawn options this tier may never use (subclasses)."""

    async def launch(self, starting: Awaitable[T]) -> T:
        """Await the start proper (after the gate) for at most `launch_timeout` seconds;
        LaunchTimeout, which says so, when it takes longer (``starting`` is cancelled).
        A TimeoutError of its own (an API retry that gave up) passes as it is."""
        seconds = self.launch_timeout or self.start_timeout
        try:
            async with asyncio.timeout(seconds) as deadline:
                return await starting
        except TimeoutError:
            if not deadline.expired():
                raise
            raise LaunchTimeout(
                f"Your server did not start within {seconds:g} seconds. Try again; tell an "
                "administrator if it keeps happening.",
                reason="timeout",
                status_code=503,
            ) from None

    # -- the spawn gate -------------------------------------------------------------------

    def _gate_say(self, message: str) -> None:
        if not self._gate_messages or self._gate_messages[-1] != message:
            self._gate_messages.append(message)

    async def pass_gate(self, tier: Tier) -> ClusterSize | None:
        """Wait until the reservation service lets this spawn through; the size it gives.

        None means: no size imposed (the spawn form's choice stands).
        """
        self._gate_messages, self._gate_open = [], True
        try:
            return await self._ask_gate(tier)
        finally:
            self._gate_open = False

    async def _ask_gate(self, tier: Tier) -> ClusterSize | None:
        gate = SpawnGateClient(self.reservations_url, self.reservations_token)
        booked = booking_id(self.name) is not None
        profile = (self.user_options or {}).get("profile")
        deadline = time.monotonic() + self.queue_timeout
        while True:
            try:
                answer = await gate.check(self.user.name, self.name or "", profile, tier.name)
            except GateUnreachable as error:
                return self._gate_unreachable(tier, booked, str(error))
            except GateRefused as error:  # an error answer: refused, never the fallback
                self.log.warning("Spawn gate error for %s: %s", self._log_name, error.message)
                status = 503 if error.status >= 500 else 403
                raise SpawnRefused(
                    error.message, reason="booking" if booked else "capacity", status_code=status
                ) from None
            if answer.allowed:
                self._gate_say(answer.reason)
                self.log.info("Spawn gate lets %s through: %s", self._log_name, answer.reason)
                if answer.limits:
                    size = ClusterSize.from_limits(answer.limits)
                    # shown in the hub's server model: what this start really got
                    applied = {"booking": answer.booking, **answer.limits}
                    self.user_options = {**(self.user_options or {}), "applied": applied}
                    self.gate_booked = answer.size
                    title = display_text(answer.title)  # one clean line, as the hub's rule
                    if title and self.orm_spawner is not None:
                        # the home page lists the booking's server under its title
                        self.orm_spawner.display_name = title
                    return size
                return None
            if not answer.queued:
                raise SpawnRefused(
                    answer.reason,
                    reason="booking" if booked else "capacity",
                    status_code=403 if booked else 429,
                )
            self._gate_say(answer.reason)
            if time.monotonic() > deadline:
                await gate.withdraw(self.user.name, self.name or "")
                minutes = self.queue_timeout / 60
                raise SpawnRefused(
                    f"The shared cluster stayed full for {minutes:g} minutes, so this start "
                    "gave up. Try again later, or book a cluster on the reservations page.",
                    reason="capacity",
                    status_code=503,
                )
            await asyncio.sleep(self.queue_poll_interval)

    def _gate_unreachable(self, tier: Tier, booked: bool, error: str) -> ClusterSize | None:
        self.log.warning("Reservation service unreachable for %s: %s", self._log_name, error)
        if booked:
            raise SpawnRefused(
                "The reservation service is not answering, so booked servers cannot start "
                "right now. Try again in a minute; tell an administrator if it persists.",
                reason="booking",
                status_code=503,
            )
        if self.when_unreachable == "refuse":
            raise SpawnRefused(
                "The reservation service is not answering, so no server can start right now. "
                "Try again in a minute.",
                reason="capacity",
                status_code=503,
            )
        if self.when_unreachable == "allow":
            return None
        size = self.offering.smallest_size(tier)
        # shown in the hub's server model, as a booking's size is: what this start got
        applied = {"booking": None, "fallback": "smallest", **size.as_limits()}
        self.user_options = {**(self.user_options or {}), "applied": applied}
        self._gate_say(
            "The reservation service is not answering: starting with the smallest "
            "size while it is away."
        )
        return size

    async def gate_progress(self) -> AsyncIterator[dict]:
        """The gate's messages (queue position, booking) for the spawn page's progress bar."""
        for _ in range(40):  # start() may not have reached the gate yet
            if self._gate_open or getattr(self, "_gate_messages", None):
                break
            await asyncio.sleep(0.05)
        shown = 0
        while True:
            messages = getattr(self, "_gate_messages", [])
            while shown < len(messages):
                yield {"progress": 1, "message": messages[shown]}
                shown += 1
            if not self._gate_open:
                return
            await asyncio.sleep(0.2)
