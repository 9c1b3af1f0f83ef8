"""Column types shared by the tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from annotated_types import Interval
from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Row ids are 64-bit signed integers in every database: a larger number given as input is a
# 422, never an overflow inside a query.
MAX_ROW_ID = 2**63 - 1
RowIdValue = Annotated[int, Interval(ge=1, le=MAX_ROW_ID)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite has no zones) and always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not accepted; use utcnow()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)
