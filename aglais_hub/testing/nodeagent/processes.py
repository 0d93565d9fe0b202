"""Finding and ending the processes that stand for containers.

Every container process starts in its own session (its own process group) and carries
``AGLAIS_NODEAGENT_POD=<cluster>/<node>/<pod uid>`` in its environment, which its
children inherit even when they start sessions of their own (Jupyter kernels do). A
process is a pod's when it is in one of the pod's process groups or carries its mark.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

MARK = "AGLAIS_NODEAGENT_POD"


def mark(cluster: str, node: str, uid: str) -> str:
    return f"{cluster}/{node}/{uid}"


def _environ_mark(pid: str) -> str | None:
    try:
        data = Path("/proc", pid, "environ").read_bytes()
    except OSError:
        return None
    prefix = MARK.encode() + b"="
    for entry in data.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def _pgid_if_alive(pid: str) -> int | None:
    try:
        fields = Path("/proc", pid, "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[2])


def find(mark_prefix: str, pgids: set[int] = frozenset()) -> list[int]:
    """Live (not zombie) processes whose mark starts with ``mark_prefix`` or whose process
    group is one of ``pgids``; never this process."""
    found = []
    for entry in Path("/proc").iterdir():
        pid = entry.name
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        pgid = _pgid_if_alive(pid)
        if pgid is None:
            continue
        label = _environ_mark(pid)
        if pgid in pgids or (label is not None and label.startswith(mark_prefix)):
            found.append(int(pid))
    return found


def signal_all(pids: list[int], pgids: set[int], sig: int) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_all(mark_prefix: str, pgids: set[int] = frozenset()) -> list[int]:
    """SIGKILL every process found; the pids that were found."""
    pids = find(mark_prefix, pgids)
    signal_all(pids, set(pgids), signal.SIGKILL)
    return pids
