"""The example notebooks in every user's ``Examples/`` folder, never over a user's change.

Each server start copies the examples of its flavour (``Flavour.examples``, a file suffix)
from ``notebooks/examples/`` (``/opt/aglais/examples`` in the notebook image) into the
user's ``Examples/`` folder: the local spawner before it starts the server, a notebook
pod in an init container. A record in that folder (`RECORD`) holds the checksum of each
file as last copied, so that `plan` can tell a file the user changed (kept) from one
they did not (updated when the example changed) and from one they deleted (left
deleted). `aglais-hub examples refresh` does the same for every user of the local
spawner at once; on Kubernetes each server's next start does it.

`plan` decides and is pure; `sync_examples` reads and writes the folder. Only the
standard library is imported: the notebook image runs this without the hub's stack.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# the examples beside this package (a source checkout, or the image's copy of one)
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "notebooks" / "examples"
FOLDER = "Examples"
RECORD = ".aglais-examples.json"


class Step(enum.Enum):
    """What a sync does with one example file."""

    ADD = "added"  # not in the folder and never copied: copy it
    UPDATE = "updated"  # as last copied, and the example changed: copy the new one
    SAME = "unchanged"  # already the example's current text
    KEEP_CHANGED = "kept (changed by the user)"  # differs from what was copied
    KEEP_OWN = "kept (the user's own file of that name)"  # there before any copy
    LEFT_DELETED = "left deleted (removed by the user)"  # copied once, then removed


def plan(
    examples: Mapping[str, str], folder: Mapping[str, str], copied: Mapping[str, str]
) -> dict[str, Step]:
    """The step for each example, from checksums by file name: the examples' own, the
    user's folder's, and the record of what was last copied there."""
    steps = {}
    for name, current in examples.items():
        theirs, last = folder.get(name), copied.get(name)
        if theirs is None:
            steps[name] = Step.LEFT_DELETED if last is not None else Step.ADD
        elif theirs == current:
            steps[name] = Step.SAME
        elif last is None:
            steps[name] = Step.KEEP_OWN
        elif theirs == last:
            steps[name] = Step.UPDATE
        else:
            steps[name] = Step.KEEP_CHANGED
    return steps


@dataclass
class SyncReport:
    """What one sync did, by file name."""

    folder: Path
    steps: dict[str, Step] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for a log: counts by step, e.g. ``7 added``."""
        counts: dict[str, int] = {}
        for step in self.steps.values():
            counts[step.value] = counts.get(step.value, 0) + 1
        said = ", ".join(f"{n} {what}" for what, n in counts.items()) or "no examples"
        return f"{self.folder}: {said}"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def example_files(source: Path, suffix: str) -> dict[str, Path]:
    """The example files of one flavour (by ``suffix``) in ``source``, by name."""
    if not suffix:
        return {}
    return {p.name: p for p in sorted(source.glob(f"*{suffix}")) if p.is_file()}


def sync_examples(source: Path, folder: Path, suffix: str) -> SyncReport:
    """Copy the ``suffix`` examples of ``source`` into ``folder`` as `plan` says, and
    update the record there. A file is written beside its place and renamed, so a
    notebook open in the user's browser never reads half a file."""
    report = SyncReport(folder)
    examples = example_files(source, suffix)
    if not examples:
        return report
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / RECORD
    try:
        copied = json.loads(record_path.read_text())
        copied = copied if isinstance(copied, dict) else {}
    except (FileNotFoundError, ValueError):
        copied = {}
    current = {name: _digest(path) for name, path in examples.items()}
    present = {name: _digest(folder / name) for name in examples if (folder / name).is_file()}
    report.steps = plan(current, present, copied)
    for name, step in report.steps.items():
        if step in (Step.ADD, Step.UPDATE):
            partial = folder / f".{name}.part"
            shutil.copyfile(examples[name], partial)
            os.replace(partial, folder / name)
        if step in (Step.ADD, Step.UPDATE, Step.SAME):
            copied[name] = current[name]
    partial = record_path.with_suffix(".part")
    partial.write_text(json.dumps(copied, indent=2, sort_keys=True) + "\n")
    os.replace(partial, record_path)
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m aglais_hub.examples SOURCE FOLDER SUFFIX``: one sync (a pod's init
    container runs this; it needs nothing but the standard library). Exits 0 even when
    nothing could be copied (and says why), so that a pod still starts."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m aglais_hub.examples SOURCE FOLDER SUFFIX", file=sys.stderr)
        return 2
    source, folder, suffix = Path(args[0]), Path(args[1]), args[2]
    # examples are a convenience: a problem is said, never the reason a server fails
    if not source.is_dir():
        print(f"examples: {source} is not a directory; none copied", file=sys.stderr)
        return 0
    try:
        print(sync_examples(source, folder, suffix).summary(), flush=True)
    except OSError as error:
        print(f"examples: none copied: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
