"""``aglais-hub reservations ...``: run the service, and admin commands on its database.

The admin commands work on the database directly (run them where the service's
database is reachable, e.g. ``kubectl exec`` into its pod). A booking cancelled
here has its server stopped by the service's scheduler at its next tick.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import sys
from datetime import UTC, datetime

from ..config import ValuesError, load_values
from .ledger import Caller, Ledger
from .models import STATES
from .rules import Refused
from .server import database_url
from .settings import settings_from_values
from .store import Store

FIELDS = ["id", "user", "size", "title", "start", "end", "state", "server_name", "created_by"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--values",
        default=os.environ.get("AGLAIS_VALUES", "values.yaml"),
        help="the values file (default: $AGLAIS_VALUES)",
    )
    parser.add_argument("--db-url", help="the bookings database (default: from the values)")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("serve", help="run the service (the hub or Kubernetes starts this)")
    sub.add_parser("migrate", help="bring the database schema up to date")
    listing = sub.add_parser("list", help="print bookings as a table")
    listing.add_argument("--user", help="only this user's bookings")
    listing.add_argument("--state", choices=STATES, help="only bookings in this state")
    cancel = sub.add_parser("cancel", help="cancel bookings (their servers are stopped)")
    cancel.add_argument("ids", nargs="+", type=int, help="booking ids")
    export = sub.add_parser("export", help="write every booking as JSON or CSV")
    export.add_argument("--format", choices=["json", "csv"], default="json")
    export.add_argument("--output", "-o", help="file to write (default: standard output)")


def run(args: argparse.Namespace) -> int:
    try:
        values = load_values(args.values)
    except ValuesError as error:
        print(error, file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"
    )
    if args.action == "serve":
        from .server import serve

        asyncio.run(serve(values))
        return 0
    store = Store(args.db_url or database_url(values))
    store.migrate()
    ledger = Ledger(store, settings_from_values(values))
    admin = Caller("aglais-hub-cli", admin=True)
    try:
        if args.action == "list":
            rows = [b.as_json() for b in ledger.list(admin, args.user, args.state)]
            print_table(rows)
        elif args.action == "cancel":
            failed = 0
            for booking_id in args.ids:
                try:
                    booking = ledger.cancel(admin, booking_id)
                    print(
                        f"cancelled booking {booking.id} of {booking.user} ({booking.server_name})"
                    )
                except Refused as refused:
                    print(f"booking {booking_id}: {refused.message}", file=sys.stderr)
                    failed += 1
            return 1 if failed else 0
        elif args.action == "export":
            rows = [b.as_json() for b in ledger.list(admin)]
            out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
            try:
                write_export(rows, args.format, out)
            finally:
                if args.output:
                    out.close()
    finally:
        store.dispose()
    return 0


def print_table(rows: list[dict]) -> None:
    if not rows:
        print("no bookings")
        return
    columns = ["id", "user", "size", "state", "start", "end", "title"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def write_export(rows: list[dict], fmt: str, out) -> None:  # noqa: ANN001
    if fmt == "json":
        exported = {"exported_at": datetime.now(UTC).isoformat(), "reservations": rows}
        json.dump(exported, out, indent=2)
        out.write("\n")
        return
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
