"""Alembic environment: runs on the connection `Store.migrate()` hands over.

From a shell: ``alembic -x url=postgresql+psycopg://... upgrade head`` with
``script_location`` pointing here also works.
"""

from alembic import context
from sqlalchemy import create_engine

from aglais_hub.reservations.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    with create_engine(url).begin() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
