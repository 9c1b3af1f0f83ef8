"""Test helpers: real services, real processes."""
