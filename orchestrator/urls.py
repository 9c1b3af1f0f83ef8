"""Absolute URLs of this control plane, as notebooks and emails must reach it."""

from __future__ import annotations

from starlette.requests import Request

from orchestrator.settings import Settings


def public_url(settings: Settings, request: Request | None, path: str) -> str:
    """``path`` under BATON_PUBLIC_URL when it is set, else under the base URL ``request``
    came in on (what a worker that reached us used), else under the default public URL."""
    if "public_url" in settings.model_fields_set or request is None:
        base = settings.public_url
    else:
        base = str(request.base_url)
    return f"{base.rstrip('/')}/{path.lstrip('/')}"
