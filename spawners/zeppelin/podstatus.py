"""Why a pod cannot start, in words a user understands (pure)."""

from __future__ import annotations

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
            "PodScheduled", "False", "Unschedulable"):  # fmt: skip
            return (
                f"Your server cannot start: no node has room for it ({condition.get('message')})."
            )
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in WAITING_PROBLEMS:
            detail = waiting.get("message") or reason
            return (f"Your server cannot start: {WAITING_PROBLEMS[reason]} "
                    f"(container {container['name']}, {reason}: {detail}).")  # fmt: skip
    return None
