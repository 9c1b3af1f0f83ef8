"""Pure-logic unit tests: no Redis, no database, no server."""
