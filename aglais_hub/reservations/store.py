"""The bookings database: engine, migrations, and the one lock that serialises bookings.

Every change that needs a capacity check runs inside `Store.booking_transaction()`:
on PostgreSQL a transaction-scoped advisory lock, on SQLite ``BEGIN IMMEDIATE``.
Two requests can then never both see the same free capacity and over-commit it.

`Store.run()` is how the ledger uses a transaction: a connection the database drops
(a restart, a failover, ``pg_terminate_backend``) re-runs the whole transaction once,
on a fresh connection, instead of failing the request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import and_, create_engine, event, func, literal, or_, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .models import Booking, UTCDateTime

log = logging.getLogger("aglais.reservations")
T = TypeVar("T")
RETRY_PAUSE = 0.05  # seconds before the one re-run of a transaction whose connection dropped
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BOOKING_LOCK_KEY = 0x61676C6169  # "aglai": any constant shared by every service instance


# SQLite: booking transactions start with BEGIN IMMEDIATE (the write lock, taken before
# the capacity is read); everything else with a plain BEGIN, so readers never queue.
_immediate = threading.local()


def make_engine(url: str) -> Engine:
    """An engine; on SQLite, WAL, a busy timeout, and BEGIN IMMEDIATE for bookings."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, record) -> None:  # noqa: ANN001
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

        @event.listens_for(engine, "begin")
        def _begin(connection) -> None:  # noqa: ANN001
            immediate = getattr(_immediate, "on", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not psycopg2
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Store:
    """Bookings on SQLite or PostgreSQL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction for reads and simple writes."""
        with self.sessions.begin() as session:
            yield session

    def dropped(self, error: DBAPIError) -> bool:
        """Did the database drop the connection (rather than refuse the statement)?"""
        if error.connection_invalidated:
            return True
        return self.is_postgres and isinstance(error, (OperationalError, InterfaceError))

    def run(
        self, work: Callable[[Session], T], *, booking: bool = False, retry_commit: bool = False
    ) -> T:
        """``work(session)`` in one transaction (`booking_transaction` if ``booking``).

        A dropped connection re-runs the whole transaction once. A drop during the
        commit leaves it unknown whether the commit happened, so that re-run happens
        only when ``retry_commit`` says running ``work`` twice is harmless (it finds what
        the first run did). Whatever still fails is raised (the service answers 503).
        """
        for attempt in (1, 2):
            committing = False
            try:
                with self.booking_transaction() if booking else self.session() as session:
                    result = work(session)
                    committing = True
                return result
            except DBAPIError as error:
                if attempt == 2 or not self.dropped(error) or (committing and not retry_commit):
                    raise
                log.warning(
                    "The database dropped the connection (%s); running the transaction again",
                    type(error.orig).__name__,
                )
                time.sleep(RETRY_PAUSE)
        raise AssertionError("unreachable")

    @contextmanager
    def booking_transaction(self) -> Iterator[Session]:
        """A transaction no other capacity decision can interleave with."""
        with self.sessions.begin() as session:
            if self.is_postgres:
                session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOKING_LOCK_KEY}
                )
            else:  # the session's first statement begins the transaction: make it immediate
                _immediate.on = True
                try:
                    session.execute(text("SELECT 1"))
                finally:
                    _immediate.on = False
            yield session

    @staticmethod
    def holding(
        session: Session,
        start: datetime,
        end: datetime,
        margin: timedelta,
        exclude: int | None = None,
    ) -> list[Booking]:
        """Bookings that hold capacity somewhere in ``[start, end)`` (their margin included)."""
        if session.get_bind().dialect.name == "postgresql":  # the GiST range index (0002)
            period = func.tsrange(Booking.start, Booking.end)
            window = func.tsrange(
                literal(start - margin, UTCDateTime()), literal(end, UTCDateTime())
            )
            overlaps = period.op("&&")(window)
        else:
            overlaps = and_(Booking.start < end, Booking.end > start - margin)
        query = select(Booking).where(Booking.state != "cancelled", overlaps)
        if exclude is not None:
            query = query.where(Booking.id != exclude)
        return list(session.scalars(query))

    @staticmethod
    def of_user(session: Session, user: str, since: datetime | None = None) -> list[Booking]:
        query = select(Booking).where(Booking.user == user)
        if since is not None:
            query = query.where(or_(Booking.end > since, Booking.state.in_(("pending", "active"))))
        return list(session.scalars(query.order_by(Booking.start)))

    def dispose(self) -> None:
        self.engine.dispose()
