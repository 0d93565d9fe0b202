"""Alembic environment: runs on the connection `Store.migrate()` hands over.

From a shell: ``alembic -x url=postgresql+psycopg://... upgrade head`` with
``script_location`` pointing here also works. The version table has its own name, so
this service and the reservation service may share one database.
"""

from alembic import context
from sqlalchemy import create_engine

from aglais_hub.gitsync.models import Base

VERSION_TABLE = "gitsync_alembic_version"
config = context.config
connection = config.attributes.get("connection")
if connection is None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    with create_engine(url).begin() as connection:
        context.configure(
            connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE
        )
        context.run_migrations()
else:
    context.configure(
        connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE
    )
    with context.begin_transaction():
        context.run_migrations()
