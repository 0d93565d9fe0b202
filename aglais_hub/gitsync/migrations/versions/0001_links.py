"""Linked repositories and the import records.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from aglais_hub.gitsync.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("url", sa.String(1000), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("folder", sa.String(500), nullable=False),
        sa.Column("strip_outputs", sa.Boolean(), nullable=False),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("token_sealed", sa.Text(), nullable=True),
        sa.Column("key_sealed", sa.Text(), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_links_user", "links", ["user"])
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "link_id",
            sa.Integer(),
            sa.ForeignKey("links.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("repo_path", sa.String(1000), nullable=False),
        sa.Column("blob_id", sa.String(64), nullable=False),
        sa.Column("commit_id", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("written_to", sa.String(1000), nullable=False),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_imports_link_id", "imports", ["link_id"])


def downgrade() -> None:
    op.drop_table("imports")
    op.drop_table("links")
