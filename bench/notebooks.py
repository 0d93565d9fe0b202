"""How the example suite's times grow with concurrent users: `aglais-hub benchmark` with
1, 2, 4, ... users at once, each round against the 1-user round of the same invocation.

Where it runs:

- the demo (the default): one demo platform (aglais_hub.testing.platform: the real
  JupyterHub, proxy, OIDC provider and local-Spark JupyterLab servers) serves every
  round; each user's default server is local Spark on this machine;
- ``--cluster``: the Helm chart installed on the testing cluster (the real control plane
  and two node agents, aglais_hub.testing.devcluster; the values of
  config/devcluster-chart-values.yaml and aglais_hub.testing.chartrelease.examples_values:
  the sample catalogue on a read-only volume, a JupyterLab size ``lab``). Each user books
  ``lab`` for the round and runs on the booking's server: a pod of its own with a Spark
  executor pod, behind the chart's proxy, as the nightly benchmark does. The node agents
  run pods as processes of this machine, so here too N users share its cores; what the
  cluster adds is the platform's own work per user (booking, pod, executor, auth proxy).

Users are made at the identity provider (tier power), log in through it, and get an API
token as the hub's Token page makes one. Each round runs the chosen notebooks for N users
at once with the benchmark's own runner, so the figures are the benchmark's. Prints, per
round, the wall time and each notebook's median time, and their ratios to the 1-user
round; stops at the first round where a notebook is not PASS or SLOW (and says so), and
with ``--plot FILE`` draws both against the user count.

    .venv/bin/python bench/notebooks.py [--cluster] [--users 1,2,4,8]
        [--only 01-validation.ipynb ...] [--plot bench/notebooks.png]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from aglais_hub.benchmark.booking import default_minutes
from aglais_hub.benchmark.driver import read_notebook
from aglais_hub.benchmark.hub import DEFAULT_START_TIMEOUT
from aglais_hub.benchmark.run import Outcome, Plan, UserToken, new_run_id, run_benchmark
from aglais_hub.benchmark.suite import load_suite
from aglais_hub.benchmark.verdict import DEFAULT_SLOW_FACTOR, Verdict
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import Platform, demo_values

SUITE = Path(__file__).resolve().parents[1] / "notebooks" / "examples" / "suite.yaml"
DEFAULT_ONLY = ["01-validation.ipynb", "04-hr-diagram.ipynb", "07-library-versions.ipynb"]


def user_token(hub_url: str, name: str) -> UserToken:
    """Log ``name`` in through the provider (password: the name) and make an API token."""
    client = HubClient(hub_url)
    client.login(name, name)
    return UserToken(name, client.new_token("bench/notebooks.py"))


@contextlib.contextmanager
def on_demo(tmp: Path, names: list[str]) -> Iterator[str]:
    """The demo platform with ``names`` as power users; its hub's URL."""
    platform = Platform(tmp / "demo", demo_values())
    for name in names:
        platform.set_user(name, ["users", "power"])
    platform.start()
    try:
        yield platform.url
    finally:
        platform.stop()


@contextlib.contextmanager
def on_cluster(tmp: Path, names: list[str]) -> Iterator[str]:
    """The chart on the testing cluster with ``names`` as power users at its development
    identity provider; the hub's URL (the proxy's Service, which this process resolves)."""
    from aglais_hub.testing import clusterdns
    from aglais_hub.testing.chartrelease import ChartRelease, chart_cluster, examples_values
    from aglais_hub.testing.controlplane.build import BUILD_COMMAND, find_binaries

    bin_dir = find_binaries()
    if bin_dir is None:
        sys.exit(f"the control plane is not built: run `{BUILD_COMMAND}` first")
    with chart_cluster(tmp / "cluster", bin_dir) as cluster:
        values = tmp / "examples.yaml"
        values.write_text(yaml.safe_dump(examples_values(cluster, tuple(names))))
        release = ChartRelease(cluster)
        release.timeout = "10m"
        release.install(values)
        with clusterdns.resolving(cluster.dns_file):
            yield release.url


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


def plot(path: Path, rows: list[tuple[int, float, dict[str, float]]], where: str) -> None:
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
    ax.set_xlabel(f"concurrent users ({where}, 2 cores)")
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
    parser.add_argument(
        "--cluster", action="store_true", help="on the chart on the testing cluster, not the demo"
    )
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.users.split(",")})
    suite = load_suite(SUITE)
    entries = [e for e in suite.notebooks if e.name in args.only]
    if not entries:
        parser.error(f"none of {args.only} is in {SUITE}")
    notebooks = tuple((e, read_notebook(e.path)) for e in entries)

    # on the cluster each user books the JupyterLab size for the round (its default
    # server is Zeppelin, which the runner does not drive), for as long as the notebooks may take
    size = minutes = None
    if args.cluster:
        from aglais_hub.testing.chartrelease import LAB_SIZE

        size = LAB_SIZE
        expected = (entry.seconds for entry in entries)
        minutes = default_minutes(expected, DEFAULT_SLOW_FACTOR, DEFAULT_START_TIMEOUT)
    where = on_cluster if args.cluster else on_demo
    rows: list[tuple[int, float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-notebooks-") as tmp:
        names = [f"user{i}" for i in range(1, max(counts) + 1)]
        with where(Path(tmp), names) as hub_url:
            tokens = [user_token(hub_url, name) for name in names]
            for count in counts:
                users = tuple(tokens[:count])
                plan = Plan(hub_url, users, notebooks, new_run_id(), size=size, minutes=minutes)
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
    if args.plot and rows:
        plot(args.plot, rows, "the chart on the testing cluster" if args.cluster else "one demo")
        print(f"wrote {args.plot}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
