"""Idempotency keys: a client's retry of a create finds the booking it already made.

``idempotency_key`` is what the client sent in the ``Idempotency-Key`` header,
unique per caller (``created_by``); ``request_digest`` is a SHA-256 of the request,
so the same key with a different request can be refused. Both stay NULL for
bookings made without a key (NULLs never collide in a unique constraint, on
SQLite and PostgreSQL alike).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bookings") as batch:  # SQLite cannot add a constraint in place
        batch.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
        batch.add_column(sa.Column("request_digest", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_bookings_idempotency", ["created_by", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("bookings") as batch:
        batch.drop_constraint("uq_bookings_idempotency", type_="unique")
        batch.drop_column("request_digest")
        batch.drop_column("idempotency_key")
