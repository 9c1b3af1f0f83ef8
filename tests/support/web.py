"""Drive the web UI like a browser without one: cookie session, CSRF field from the form."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def web_login(client: TestClient, email: str, password: str = "password123") -> str:
    """Log in through the form; returns the CSRF token of the new session."""
    form = client.get("/ui/login")
    assert form.status_code == 200, form.text
    reply = client.post(
        "/ui/login",
        data={"email": email, "password": password, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert reply.status_code == 303, reply.text
    page = client.get("/ui")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)
