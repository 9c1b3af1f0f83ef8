"""Alembic is the only way the schema is made; this drives it from code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

# Shipped inside the package, so an installed wheel can migrate without a checkout.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any fixed number works: it only has to be the same for every replica.
PG_MIGRATION_LOCK = 0x62A70


class SchemaOutOfDate(RuntimeError):
    pass


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    config.attributes["engine"] = engine
    return config


def head_revisions(engine: Engine) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine) -> None:
    """Upgrade to head; on Postgres an advisory lock keeps concurrent replicas from racing."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK})
            try:
                command.upgrade(alembic_config(engine), "heads")
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK})
                conn.commit()
        return
    command.upgrade(alembic_config(engine), "heads")


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    if auto_migrate:
        upgrade(engine)
        return
    current, heads = current_revisions(engine), head_revisions(engine)
    if current != heads:
        raise SchemaOutOfDate(
            f"database schema is at revision {', '.join(sorted(current)) or 'none'} but this Baton "
            f"needs {', '.join(sorted(heads))}: "
            "run `baton db upgrade` (or set BATON_AUTO_MIGRATE=true)"
        )
