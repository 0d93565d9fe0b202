"""How the example suite's times grow with concurrent users: `aglais-hub benchmark` with
1, 2, 4, ... users at once against the demo platform, each run against the 1-user run.

One demo (aglais_hub.testing.platform: the real JupyterHub, proxy, OIDC provider and
local-Spark JupyterLab servers) serves every round. Its users are made at the provider
(tier power: local[n] up to the machine's cores, 2 GiB driver), log in, and get an API
token as the hub's Token page makes one. Each round runs the chosen notebooks for N users
at once with the benchmark's own runner, so the figures are the benchmark's. Prints, per
round, the wall time and each notebook's median time, and their ratios to the 1-user
round; stops at the first round where a notebook is not PASS or SLOW (and says so), and
with ``--plot FILE`` draws both against the user count.

Every user's server is local Spark on this machine: N users share its cores. On the
testing cluster (per-user pods and executors) the same runner would spread over nodes.

    .venv/bin/python bench/notebooks.py [--users 1,2,4,8] [--only 01-validation.ipynb ...]
        [--plot bench/notebooks.png]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from aglais_hub.benchmark.driver import read_notebook
from aglais_hub.benchmark.run import Outcome, Plan, UserToken, new_run_id, run_benchmark
from aglais_hub.benchmark.suite import load_suite
from aglais_hub.benchmark.verdict import Verdict
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import Platform, demo_values

SUITE = Path(__file__).resolve().parents[1] / "notebooks" / "examples" / "suite.yaml"
DEFAULT_ONLY = ["01-validation.ipynb", "04-hr-diagram.ipynb", "07-library-versions.ipynb"]


def user_token(platform: Platform, name: str) -> UserToken:
    """Log ``name`` in through the provider and make an API token on the hub."""
    client = HubClient(platform.url)
    client.login(name, name)
    return UserToken(name, client.new_token("bench/notebooks.py"))


def round_figures(outcome: Outcome) -> tuple[float, dict[str, float], list[str]]:
    """Wall seconds, each notebook's median seconds over users, and what did not pass."""
    wall = (outcome.finished - outcome.started).total_seconds()
    by_notebook: dict[str, list[float]] = {}
    for result in outcome.results:
        by_notebook.setdefault(result.entry.name, []).append(result.seconds)
    bad = [
        f"{r.user} {r.entry.name}: {r.verdict} {r.judgement.detail}"
        for r in outcome.results
        if r.verdict not in (Verdict.PASS, Verdict.SLOW)
    ]
    return wall, {k: statistics.median(v) for k, v in by_notebook.items()}, bad


def plot(path: Path, rows: list[tuple[int, float, dict[str, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [n for n, _, _ in rows]
    base_wall, base_times = rows[0][1], rows[0][2]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(users, [w / base_wall for _, w, _ in rows], "o-", lw=2.5, label="suite wall time")
    for name in base_times:
        ratios = [times[name] / base_times[name] for _, _, times in rows]
        ax.plot(users, ratios, ".--", label=name.removesuffix(".ipynb"))
    ax.plot(users, [n / users[0] for n in users], ":", color="grey", label="linear in users")
    ax.set_xscale("log", base=2)
    ax.set_xticks(users, [str(n) for n in users])
    ax.set_xlabel("concurrent users (one demo, 2 cores)")
    ax.set_ylabel("time / 1-user time")
    ax.set_title("Example notebooks: time against concurrent users")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="1,2,4,8", help="user counts, comma separated")
    parser.add_argument("--only", nargs="+", default=DEFAULT_ONLY, help="notebooks to run")
    parser.add_argument("--plot", type=Path, help="write the figure (PNG) here")
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.users.split(",")})
    suite = load_suite(SUITE)
    entries = [e for e in suite.notebooks if e.name in args.only]
    if not entries:
        parser.error(f"none of {args.only} is in {SUITE}")
    notebooks = tuple((e, read_notebook(e.path)) for e in entries)

    rows: list[tuple[int, float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-notebooks-") as tmp:
        platform = Platform(Path(tmp) / "demo", demo_values())
        names = [f"user{i}" for i in range(1, max(counts) + 1)]
        for name in names:
            platform.set_user(name, ["users", "power"])
        platform.start()
        try:
            tokens = [user_token(platform, name) for name in names]
            for count in counts:
                plan = Plan(platform.url, tuple(tokens[:count]), notebooks, new_run_id())
                outcome = asyncio.run(run_benchmark(plan, say=lambda line: None))
                wall, times, bad = round_figures(outcome)
                if bad:
                    print(f"{count} users: stopped here, not every notebook passed: {bad}")
                    break
                rows.append((count, wall, times))
                base_wall, base_times = rows[0][1], rows[0][2]
                cells = "  ".join(
                    f"{name.removesuffix('.ipynb')} {t:.1f} s ({t / base_times[name]:.2f})"
                    for name, t in times.items()
                )
                print(
                    f"{count} users: wall {wall:.1f} s ({wall / base_wall:.2f}× 1 user)  {cells}",
                    flush=True,
                )
        finally:
            platform.stop()
    if args.plot and rows:
        plot(args.plot, rows)
        print(f"wrote {args.plot}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
