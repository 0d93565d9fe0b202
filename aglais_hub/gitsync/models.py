"""SQLAlchemy 2 models of the Git service's database (migrations: ``migrations/``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# one column type and one time format for the platform's service databases
from aglais_hub.reservations.models import UTCDateTime
from aglais_hub.reservations.policy import iso


class Base(DeclarativeBase):
    pass


class Link(Base):
    """A user's Git repository linked to the hub: which branch and folder hold their
    notebooks, and the credentials to reach it (the token sealed by `vault.Vault`)."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    url: Mapped[str] = mapped_column(String(1000))
    branch: Mapped[str] = mapped_column(String(255))
    folder: Mapped[str] = mapped_column(String(500), default="")
    strip_outputs: Mapped[bool] = mapped_column(Boolean, default=False)
    username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Fernet text, never shown; None for SSH links, which use a deploy key instead
    token_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    # SSH links: the deploy key's private half (OpenSSH format) sealed like a token,
    # never shown, and its public half (an authorized_keys line), shown to the user
    key_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    public_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:  # never the sealed token either
        return f"Link(id={self.id!r}, user={self.user!r}, url={self.url!r})"

    def as_json(self) -> dict:
        """The link as the API shows it: whether it has a token, never the token; an SSH
        link's public key (the private half never)."""
        return {
            "id": self.id,
            "user": self.user,
            "url": self.url,
            "branch": self.branch,
            "folder": self.folder,
            "strip_outputs": self.strip_outputs,
            "username": self.username,
            "has_token": self.token_sealed is not None,
            "public_key": self.public_key,
            "created": iso(self.created_at),
            "updated": iso(self.updated_at),
        }


class ImportRecord(Base):
    """The last import of one repository file into one place in a user's server: what
    was imported (the blob) and what was written (its sha256), so a later import or
    commit can tell whether the user has changed the note since."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("links.id", ondelete="CASCADE"), index=True
    )
    server: Mapped[str] = mapped_column(String(255), default="")  # "" is the default server
    repo_path: Mapped[str] = mapped_column(String(1000))
    blob_id: Mapped[str] = mapped_column(String(64))  # git's object id (SHA-1 or SHA-256)
    # the commit it came from: a commit of the user's version is made on it (git.commit)
    commit_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))  # of the file as written in the server
    written_to: Mapped[str] = mapped_column(String(1000))  # its path in the server
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def as_json(self) -> dict:
        return {
            "link": self.link_id,
            "server": self.server,
            "repo_path": self.repo_path,
            "blob_id": self.blob_id,
            "commit_id": self.commit_id,
            "sha256": self.sha256,
            "written_to": self.written_to,
            "imported": iso(self.imported_at),
        }
