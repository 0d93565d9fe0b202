"""Why a pod cannot start, in words a user understands (pure)."""

from __future__ import annotations

from aglais_hub.flavours import FLAVOURS

# The scheduler says Unschedulable while a pod's claim is not bound yet; the volume
# provisioner binds it moments later, so that is a wait, not a problem (the start
# timeout still ends a claim that never binds).
WAITING_FOR_VOLUME = "unbound immediate PersistentVolumeClaims"
WAITING_PROBLEMS = {
    "ErrImagePull": "its image cannot be pulled",
    "ImagePullBackOff": "its image cannot be pulled",
    "InvalidImageName": "its image name is invalid",
    "CreateContainerError": "its container cannot be created",
    "CreateContainerConfigError": "its container configuration is wrong",
    "CrashLoopBackOff": "it keeps crashing",
}


def start_problem(pod: dict | None) -> str | None:
    """A sentence saying why ``pod`` will not start by itself, or None if it may."""
    if not pod:
        return None
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            if WAITING_FOR_VOLUME in (condition.get("message") or ""):
                continue
            return (
                f"Your server cannot start: no node has room for it ({condition.get('message')})."
            )
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in WAITING_PROBLEMS:
            detail = waiting.get("message") or reason
            return (
                f"Your server cannot start: {WAITING_PROBLEMS[reason]} "
                f"(container {container['name']}, {reason}: {detail})."
            )
    return None


def friendly_event(event: dict) -> str | None:
    """A pod event as a spawn-page step, or None to show the event as it is."""
    reason, message = event.get("reason", ""), event.get("message", "")
    if reason == "Scheduled":
        node = message.rsplit(" to ", 1)[-1]
        return f"Found room for your server on the cluster (node {node})"
    if reason == "FailedScheduling":
        return f"Waiting for room on the cluster: {message}"
    if reason == "Pulling":
        return "Fetching the notebook image"
    if reason == "Pulled":
        return "Notebook image ready"
    if reason == "Started":  # "Started container <name>": a flavour's notebook container?
        for candidate in FLAVOURS.values():
            if message.endswith(f" {candidate.container}"):
                return candidate.starting
    if reason == "Started" and message.endswith(" auth-proxy"):
        return "The door to your server (the hub login check) is open"
    if reason in ("Created", "Killing"):
        return ""  # noise for users: left out
    if reason in ("Failed", "BackOff") or event.get("type") == "Warning":
        return f"Problem: {message}"
    return None
