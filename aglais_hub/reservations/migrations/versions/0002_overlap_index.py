"""On PostgreSQL, a GiST index on each booking's time range.

"Which bookings overlap this window?" is the capacity check's one query. B-tree
indexes on start or end alone still scan every booking on one side of the window
(thousands, with a busy calendar); a range index answers ``&&`` directly.
SQLite keeps the plain comparison (small installations).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEX = "ix_bookings_period"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'CREATE INDEX {INDEX} ON bookings USING gist (tsrange("start", "end"))')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX {INDEX}")
