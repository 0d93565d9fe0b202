"""SQLAlchemy 2 models of the bookings database (migrations: ``migrations/``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aglais_hub.offering import Resources
from aglais_hub.text import display_text

from .gate import booked_server_name
from .policy import Span, iso

STATES = ("pending", "active", "completed", "cancelled")


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python, naive UTC in the database (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the bookings database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Booking(Base):
    """A size booked by a user for ``[start, end)``; its server is the named server r<id>."""

    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    size: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200), default="")
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16), default="pending")
    # What the size was when booked: later edits of the values file do not change it.
    millicores: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(BigInteger)
    limits: Mapped[dict] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The client's Idempotency-Key (unique per caller) and a digest of what it asked for:
    # a retry with the key gets this booking back; the key with another request is refused.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_bookings_state_end", "state", "end"),
        Index("ix_bookings_start", "start"),
        UniqueConstraint("created_by", "idempotency_key", name="uq_bookings_idempotency"),
    )

    replayed = False  # not a column: True when a retry (same Idempotency-Key) found it

    @property
    def label(self) -> str:
        """How messages name the booking: its title, quoted and cleaned, else its id."""
        title = display_text(self.title, 200)
        return f"'{title}'" if title else str(self.id)

    @property
    def server_name(self) -> str:
        return booked_server_name(self.id)

    @property
    def need(self) -> Resources:
        return Resources(self.millicores, self.memory)

    def span(self, margin: Any) -> Span:
        return Span(self.start, self.end + margin, self.need)

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "user": self.user,
            "size": self.size,
            "title": self.title,
            "start": iso(self.start),
            "end": iso(self.end),
            "state": self.state,
            "server_name": self.server_name,
            "limits": self.limits,
            "created_by": self.created_by,
            "warned": self.warned_at is not None,
        }


class BenchmarkRun(Base):
    """The latest nightly benchmark's summary (one row, replaced by each run), kept here
    so its gauges on ``metrics`` survive a restart of the service."""

    __tablename__ = "benchmark_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64))
    finished: Mapped[datetime] = mapped_column(UTCDateTime())
    summary: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
