"""The CLI tests drive the real stack of tests/e2e (server, RQ worker, worker agents)."""

from tests.e2e.conftest import baton_factory  # noqa: F401  (the fixture, shared, not copied)
