"""The `aglais-hub` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import sampledata
from .config import ValuesError, load_values
from .hubconfig import PROJECT_ROOT


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        load_values(args.values)
    except ValuesError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{args.values}: OK")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    try:
        return demo.run(Path(args.state_dir), Path(args.values), args.port, args.idp_port)
    except ValuesError as error:
        print(error, file=sys.stderr)
        return 1


def cmd_values_reference(args: argparse.Namespace) -> int:
    from .config.reference import replace_reference, values_reference

    if args.write:
        readme = Path(args.write)
        readme.write_text(replace_reference(readme.read_text()))
        print(f"updated the values reference in {readme}")
    else:
        sys.stdout.write(values_reference())
    return 0


def cmd_render_pod(args: argparse.Namespace) -> int:
    import yaml

    from spawners.zeppelin.dryrun import render_server

    from .offering import ProfileRefused

    try:
        values = load_values(args.values)
    except ValuesError as error:
        print(error, file=sys.stderr)
        return 1
    if values["spawner"]["kind"] != "zeppelin":
        print(
            f"render-pod renders the zeppelin spawner's objects; {args.values} has "
            f"spawner.kind {values['spawner']['kind']!r}",
            file=sys.stderr,
        )
        return 1
    groups = [g for g in (args.groups or "").split(",") if g]
    try:
        rendered = render_server(
            values, args.user, groups, args.server or "", args.profile, args.booked
        )
    except ProfileRefused as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump_all(rendered, sort_keys=False))
    return 0


def cmd_dev_cluster(args: argparse.Namespace) -> int:
    from .testing import devcluster_cli

    return devcluster_cli.run(args)


def cmd_reservations(args: argparse.Namespace) -> int:
    from .reservations import admin

    return admin.run(args)


def cmd_gitsync(args: argparse.Namespace) -> int:
    from .gitsync import admin

    return admin.run(args)


def cmd_sample_data(args: argparse.Namespace) -> int:
    try:
        from .sampledata.catalogue import CatalogueError, write_catalogue
    except ModuleNotFoundError as missing:
        if missing.name not in sampledata.NEEDS:
            raise
        print(
            f"sample-data needs the sample-data extra ({missing.name} is not installed): "
            "pip install 'aglais-hub[sample-data]'",
            file=sys.stderr,
        )
        return 1
    try:
        manifest = write_catalogue(Path(args.dir), args.rows, args.seed, args.files, args.force)
    except CatalogueError as error:
        print(f"sample-data: {error}", file=sys.stderr)
        return 2
    for name, table in manifest["tables"].items():
        print(f"{args.dir}/{name}: {table['rows']} rows in {len(table['files'])} files")
    return 0


def cmd_examples_refresh(args: argparse.Namespace) -> int:
    from spawners.local_spark import choose_notebook

    from .examples import EXAMPLES_DIR, FOLDER, sync_examples
    from .flavours import flavour

    try:
        values = load_values(args.values)
    except ValuesError as error:
        print(error, file=sys.stderr)
        return 1
    spawner = values["spawner"]
    if spawner["kind"] != "local-spark":
        print(
            "examples: on Kubernetes each server's pod copies the examples when it starts "
            "(its init container); stopped servers get them at their next start"
        )
        return 0
    suffix = flavour(choose_notebook(spawner["localSpark"]["notebook"], os.environ)).examples
    users = Path(args.data_dir or spawner["localSpark"]["dataDir"]).resolve() / "users"
    homes = sorted(p for p in users.iterdir() if p.is_dir()) if users.is_dir() else []
    if not homes:
        print(f"examples: no users' folders under {users}", file=sys.stderr)
        return 1
    for home in homes:
        print(sync_examples(EXAMPLES_DIR, home / FOLDER, suffix).summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aglais-hub", description="Aglais Hub: Spark notebooks for science data."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check-config", help="validate a values file")
    check.add_argument("values", help="the values file (YAML)")
    check.set_defaults(func=cmd_check_config)

    demo = sub.add_parser("demo", help="run the whole platform on this machine")
    demo.add_argument("--values", default=str(PROJECT_ROOT / "config" / "demo.yaml"))
    demo.add_argument("--state-dir", default=".demo", help="where state survives restarts")
    demo.add_argument("--port", type=int, default=None, help="public port (default: values)")
    demo.add_argument("--idp-port", type=int, default=5556, help="identity provider port")
    demo.set_defaults(func=cmd_demo)

    render = sub.add_parser("render-pod", help="print every object a Zeppelin spawn creates")
    render.add_argument("values", help="the values file (YAML)")
    render.add_argument("--user", required=True, help="the user's hub name")
    render.add_argument("--groups", default="", help="the user's groups, comma separated")
    render.add_argument("--server", default="", help="a named server")
    render.add_argument("--profile", help="a size from the values' sizes")
    render.add_argument(
        "--booked", metavar="SIZE", help="render the server of a booking of this size"
    )
    render.set_defaults(func=cmd_render_pod)

    from .testing import devcluster_cli

    dev = sub.add_parser(
        "dev-cluster",
        help="run the testing cluster on the real Kubernetes control plane, with node agents",
        description=devcluster_cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    devcluster_cli.add_arguments(dev)
    dev.set_defaults(func=cmd_dev_cluster)

    reservations = sub.add_parser(
        "reservations", help="the reservation service and its admin commands"
    )
    from .reservations.admin import add_arguments as reservation_arguments

    reservation_arguments(reservations)
    reservations.set_defaults(func=cmd_reservations)

    gitsync = sub.add_parser(
        "gitsync", help="the Git service (linked repositories; the hub starts it)"
    )
    from .gitsync.admin import add_arguments as gitsync_arguments

    gitsync_arguments(gitsync)
    gitsync.set_defaults(func=cmd_gitsync)

    sample = sub.add_parser(
        "sample-data", help="write a Gaia-DR3-like sample catalogue (Parquet) for the examples"
    )
    sample.add_argument("dir", help="the directory to write (created; must be new or empty)")
    sample.add_argument(
        "--rows", type=int, default=sampledata.DEFAULT_ROWS, help="Gaia-like sources"
    )
    sample.add_argument(
        "--seed", type=int, default=sampledata.DEFAULT_SEED, help="the same seed, the same sky"
    )
    sample.add_argument(
        "--files", type=int, default=sampledata.DEFAULT_FILES, help="Parquet files of gaia_source"
    )
    sample.add_argument("--force", action="store_true", help="replace an earlier catalogue")
    sample.set_defaults(func=cmd_sample_data)

    examples = sub.add_parser("examples", help="the example notebooks in users' folders")
    examples_sub = examples.add_subparsers(dest="action", required=True)
    refresh = examples_sub.add_parser(
        "refresh",
        help="copy the current examples into every user's Examples/ folder now (a note "
        "a user changed or deleted is left as it is)",
    )
    refresh.add_argument("values", help="the hub's values file")
    refresh.add_argument(
        "--data-dir", help="the local spawner's data directory (default: the values' dataDir)"
    )
    refresh.set_defaults(func=cmd_examples_refresh)

    from .benchmark import cli as benchmark_cli

    benchmark_cli.add_parser(sub)
    from .benchmark import nightly

    nightly.add_parser(sub)

    ref = sub.add_parser("values-reference", help="print the values reference (Markdown)")
    ref.add_argument("--write", metavar="README", help="update the marked section of this file")
    ref.set_defaults(func=cmd_values_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
