"""Absolute URLs the control plane hands out (grants' download links)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request


def base_url(request: Request) -> str:
    """Where clients reach this control plane, without a trailing slash.

    The one place absolute URLs start from: the URL this request came in on.
    """
    return str(request.base_url).rstrip("/")


BaseUrl = Annotated[str, Depends(base_url)]
