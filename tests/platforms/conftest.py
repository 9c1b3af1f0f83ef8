from tests.e2e.conftest import baton_factory

__all__ = ["baton_factory"]  # the real-process stack, shared with tests/e2e
