"""The Git service's database: engine, migrations, and every query on links and imports.

Synchronous (the service runs these in its thread pool). Each method is one
transaction. Nothing here decides who may see what: that is `service.Service`'s job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, delete, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .models import ImportRecord, Link

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine; on SQLite with WAL, a busy timeout and foreign keys enforced. Errors
    never show statement parameters (sealed tokens among them)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, record) -> None:  # noqa: ANN001
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA foreign_keys=ON")  # imports go with their link

        return engine
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not psycopg2
    return create_engine(
        url, pool_size=5, max_overflow=10, pool_pre_ping=True, hide_parameters=True
    )


class Store:
    """Links and import records on SQLite or PostgreSQL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    # -- links -----------------------------------------------------------------------------

    def add_link(self, link: Link) -> Link:
        with self.session() as session:
            session.add(link)
        return link

    def link(self, link_id: int) -> Link | None:
        with self.session() as session:
            return session.get(Link, link_id)

    def links(self, user: str | None = None) -> list[Link]:
        """Every link (or one user's), by user then id."""
        query = select(Link).order_by(Link.user, Link.id)
        if user is not None:
            query = query.where(Link.user == user)
        with self.session() as session:
            return list(session.scalars(query))

    def count_links(self, user: str) -> int:
        with self.session() as session:
            return session.scalar(select(func.count(Link.id)).where(Link.user == user)) or 0

    def same_target(
        self, user: str, url: str, branch: str, folder: str, exclude: int | None = None
    ) -> Link | None:
        """The user's link to the same repository, branch and folder, if any."""
        query = select(Link).where(
            Link.user == user, Link.url == url, Link.branch == branch, Link.folder == folder
        )
        if exclude is not None:
            query = query.where(Link.id != exclude)
        with self.session() as session:
            return session.scalars(query.limit(1)).first()

    def change_link(self, link_id: int, changes: dict[str, Any], now: datetime) -> Link | None:
        """Set ``changes`` (column: value) on the link; None when it is gone."""
        with self.session() as session:
            link = session.get(Link, link_id)
            if link is None:
                return None
            for column, value in changes.items():
                setattr(link, column, value)
            link.updated_at = now
        return link

    def delete_link(self, link_id: int) -> bool:
        """Remove the link and its import records; False when it was already gone."""
        with self.session() as session:
            session.execute(delete(ImportRecord).where(ImportRecord.link_id == link_id))
            return session.execute(delete(Link).where(Link.id == link_id)).rowcount > 0

    # -- imports ---------------------------------------------------------------------------

    def record_import(
        self,
        link_id: int,
        server: str,
        repo_path: str,
        blob_id: str,
        commit_id: str,
        sha256: str,
        written_to: str,
        when: datetime,
    ) -> ImportRecord:
        """Remember the latest import into ``server``'s ``written_to`` (replacing the
        earlier record for that place)."""
        with self.session() as session:
            record = session.scalars(
                select(ImportRecord).where(
                    ImportRecord.link_id == link_id,
                    ImportRecord.server == server,
                    ImportRecord.written_to == written_to,
                )
            ).first()
            if record is None:
                record = ImportRecord(link_id=link_id, server=server, written_to=written_to)
                session.add(record)
            record.repo_path = repo_path
            record.blob_id = blob_id
            record.commit_id = commit_id
            record.sha256 = sha256
            record.imported_at = when
        return record

    def imports(self, link_id: int, server: str | None = None) -> list[ImportRecord]:
        """The link's import records (in one server, or all), by path in the server."""
        query = select(ImportRecord).where(ImportRecord.link_id == link_id)
        if server is not None:
            query = query.where(ImportRecord.server == server)
        with self.session() as session:
            return list(session.scalars(query.order_by(ImportRecord.written_to)))
