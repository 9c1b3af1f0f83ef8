"""Baton's control plane: REST API, dispatch on Redis, background work on RQ."""
