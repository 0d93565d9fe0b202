"""From values, a user and a requested profile to a `ServerSpec` (pure policy)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kubespawner.slugs import multi_slug, safe_slug

from aglais_hub.quotas import TIER_PROFILE, ClusterSize, Tier, resolve_tier, tier_from_values

from .objects import DataVolume, ServerSpec

SLUG_MAX = 48  # as KubeSpawner's "safe" slug scheme


class ProfileRefused(ValueError):
    """A profile the user's tier may not use (the message is for the user)."""


def user_server_slug(username: str, server_name: str = "") -> str:
    """KubeSpawner's ``{user_server}`` in its "safe" slug scheme."""
    user = safe_slug(username, max_length=SLUG_MAX)
    server = safe_slug(server_name, max_length=SLUG_MAX) if server_name else ""
    if len(user) + len(server) + 2 > SLUG_MAX:
        return multi_slug([username, server_name], max_length=SLUG_MAX)
    return f"{user}--{server}" if server else user


def expand(template: str, username: str, server_name: str = "") -> str:
    """A name template with KubeSpawner's {username}, {servername}, {user_server}."""
    rendered = template.format(
        username=safe_slug(username, max_length=SLUG_MAX),
        servername=safe_slug(server_name, max_length=SLUG_MAX) if server_name else "",
        user_server=user_server_slug(username, server_name),
    )
    return rendered if template.endswith("-") else rendered.rstrip("-")


def tier_for_groups(values: Mapping, groups: Iterable[str]) -> Tier:
    auth, tiers = values["auth"], values["tiers"]
    ranks = {name: t["rank"] for name, t in tiers.items()}
    name = resolve_tier(groups, auth["tierGroups"], ranks, auth["defaultTier"])
    return tier_from_values(name, tiers[name])


def cluster_size(values: Mapping, tier: Tier, profile: str | None) -> tuple[ClusterSize, str]:
    """The size a server gets (the tier's own, or a named size) and its flavour."""
    if not profile or profile == TIER_PROFILE:
        return ClusterSize.from_tier(tier), "zeppelin"
    sizes = values.get("sizes") or {}
    if profile not in sizes:
        known = ", ".join(sorted(sizes)) or "none"
        raise ProfileRefused(f"There is no size '{profile}' (sizes: {known}).")
    size = sizes[profile]
    tiers = values["tiers"]
    needed = size.get("minTier")
    if needed and tiers[needed]["rank"] > tier.rank:
        shown = tiers[needed].get("displayName") or needed
        raise ProfileRefused(
            f"The size '{size.get('displayName') or profile}' needs tier '{shown}' or higher; "
            f"your tier is '{tier.display_name}'."
        )
    return ClusterSize.from_values(size), size.get("flavour", "zeppelin")


def server_spec(values: Mapping, username: str, tier: Tier, server_name: str = "",
                profile: str | None = None, env: Mapping[str, str] | None = None,
                pvc_name: str | None = None) -> ServerSpec:  # fmt: skip
    """Everything that decides the objects of one spawn."""
    k8s = values["spawner"]["kubernetes"]
    size, flavour = cluster_size(values, tier, profile)
    return ServerSpec(
        username=username,
        server_name=server_name,
        namespace=expand(k8s["namespaceTemplate"], username),
        pod_name=expand(k8s["podNameTemplate"], username, server_name),
        pvc_name=pvc_name or expand("claim-{username}", username),
        tier=tier,
        size=size,
        zeppelin_image=k8s["zeppelinImage"],
        spark_image=k8s["sparkImage"],
        env=dict(env or {}),
        storage_class=k8s["storageClass"],
        access_modes=tuple(k8s["accessModes"]),
        data_volumes=tuple(
            DataVolume(v["name"], v["mountPath"], v["source"]) for v in k8s["dataVolumes"]
        ),  # fmt: skip
        api_server=k8s["apiServer"],
        api_server_cidrs=tuple(k8s["apiServerCIDRs"]),
        data_cidrs=tuple(k8s["dataCIDRs"]),
        hub_selector=k8s["hubSelector"],
        driver_port=k8s["driverPort"],
        block_manager_port=k8s["blockManagerPort"],
        run_as_user=k8s["runAsUser"],
        pod_security=k8s["podSecurity"],
        flavour=flavour,
        activity_interval=k8s["activityInterval"],
        reservations_port=values["reservations"]["port"]
        if values["reservations"]["enabled"]
        else 0,
    )
