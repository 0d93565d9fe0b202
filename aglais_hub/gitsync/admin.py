"""``aglais-hub gitsync ...``: run the Git service, or bring its database up to date."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from ..config import ValuesError, load_values
from .vault import VaultError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--values",
        default=os.environ.get("AGLAIS_VALUES", "values.yaml"),
        help="the values file (default: $AGLAIS_VALUES)",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("serve", help="run the service (the hub starts this)")
    sub.add_parser("migrate", help="bring the database schema up to date")


def run(args: argparse.Namespace) -> int:
    try:
        values = load_values(args.values)
    except ValuesError as error:
        print(error, file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"
    )
    from .server import build, serve

    if args.action == "migrate":
        from .settings import settings_from_values
        from .store import Store

        store = Store(settings_from_values(values).db_url)
        store.migrate()
        store.dispose()
        print("the gitsync database is up to date")
        return 0
    try:
        service = build(values)
    except VaultError as error:
        print(f"gitsync: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(service))
    return 0
