"""Alembic environment: the engine comes from Baton's own factory (see orchestrator.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine
from sqlmodel import SQLModel

import orchestrator.models  # noqa: F401  (registers every table on SQLModel.metadata)
from orchestrator.db import make_engine
from orchestrator.models.types import UTCDateTime
from orchestrator.settings import Settings

target_metadata = SQLModel.metadata


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("import orchestrator.models.types")  # type: ignore[attr-defined]
        return "orchestrator.models.types.UTCDateTime()"
    return False


def run_migrations() -> None:
    config = context.config
    engine: Engine = config.attributes.get("engine") or make_engine(
        config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=engine.dialect.name == "sqlite",
            render_item=_render_item,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
