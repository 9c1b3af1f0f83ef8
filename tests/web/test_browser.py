"""The admin page in a real headless Chromium against the real stack: API, RQ worker and
worker agents running real jobs. Screenshots go to test-artifacts/ for a person to check."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ADMIN, Baton
from tests.support.api import create_user
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
USER = ("user@example.com", "password123")

# A job with a falling loss curve and chatty output, for the metrics chart and the log.
TRAINER = """
import math, time
from worker.context import JobContext
ctx = JobContext.from_env()
for step in range(1, 401):
    time.sleep(0.1)
    loss = 2.4 * math.exp(-step / 50) + 0.15
    print(f"step {step:3d}  loss {loss:.4f}", flush=True)
    ctx.progress(step, 400, loss=loss, lr=0.001 * (1 - step / 400))
"""


def _log_in(page: Any, base: str, email: str, password: str, target: str = "/ui") -> None:
    page.goto(base + target)
    assert "/ui/login" in page.url, "an anonymous visitor is sent to the login form"
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + target)


def _bar_step(page: Any, experiment_id: int) -> int:
    selector = f'li.run[data-experiment="{experiment_id}"] [role=progressbar]'
    return int(page.get_attribute(selector, "aria-valuenow"))


def _fits_width(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_admin_watches_a_job_progress_live_and_cancels_it(
    baton_factory: Callable[..., Baton], browser: Any, artifacts: Path
) -> None:
    baton = baton_factory()
    counter = baton.submit(
        name="counter-demo",
        kind="demo.counter",
        priority=10,
        config={"steps": 600, "step_seconds": 0.25, "checkpoint_every": 20},
    )
    command = f"{sys.executable} -c {shlex.quote(TRAINER)}"
    trainer = baton.submit(name="trainer", kind="command", config={"command": command})
    baton.start_worker("worker-a")
    baton.wait_status(counter, "running", timeout=60)
    baton.start_worker("worker-b")
    baton.wait_status(trainer, "running", timeout=60)

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    base = baton.stack.url
    _log_in(page, base, *ADMIN)

    # The bar moves while the page stays the same document: the script swaps fragments.
    page.wait_for_selector(f'li.run[data-experiment="{counter}"]')
    page.evaluate("window.__sameDocument = true")
    first = _bar_step(page, counter)
    wait_until(lambda: _bar_step(page, counter) >= first + 4, timeout=30, what="the bar to move")
    assert page.evaluate("window.__sameDocument === true"), "the page was not reloaded"
    assert page.inner_text("#live-state").startswith("Live")
    page.wait_for_selector("[data-live=workers] >> text=worker-b")
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    phone = browser.new_context(viewport=PHONE, storage_state=context.storage_state())
    small = phone.new_page()
    small.goto(base + "/ui")
    small.wait_for_selector(f'li.run[data-experiment="{counter}"]')
    assert _fits_width(small), "no sideways scrolling on a phone"
    small.screenshot(path=str(artifacts / "phone-overview.png"), full_page=True)

    # The trainer's page: metrics chart and the log following the job's output.
    page.goto(f"{base}/ui/experiments/{trainer}")
    page.wait_for_selector("[data-live=metrics] polyline")
    seen = page.inner_text("pre.log")

    def more_output() -> bool:
        text = page.inner_text("pre.log")
        return len(text) > len(seen) and "loss" in text

    wait_until(more_output, timeout=30, what="new log lines to appear without a reload")
    page.screenshot(path=str(artifacts / "experiment.png"), full_page=True)
    small.goto(f"{base}/ui/experiments/{trainer}")
    small.wait_for_selector("[data-live=metrics] polyline")
    assert _fits_width(small)
    small.screenshot(path=str(artifacts / "phone-experiment.png"), full_page=True)

    # Cancel the counter from its own page (the form asks first).
    page.goto(f"{base}/ui/experiments/{counter}")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Cancel')")
    page.wait_for_selector(".flash >> text=canceled")
    assert page.inner_text("[data-live=summary] .badge") == "canceled"
    assert page.query_selector("button:has-text('Cancel')") is None
    # The worker stops the job within a heartbeat; the page shows the attempt close live.
    page.wait_for_selector("[data-live=attempts] .badge.s-canceled", timeout=20_000)
    assert baton.get(counter)["status"] == "canceled"

    page.click("[data-live=attempts] a[href^='/ui/workers/']")
    assert page.inner_text("h1").startswith("worker-a")
    assert page.is_visible("button:has-text('Drain')") and page.is_visible("text=Revoke token")
    page.screenshot(path=str(artifacts / "worker.png"), full_page=True)
    phone.close()
    context.close()


def test_users_are_kept_to_their_own_and_forms_need_the_csrf_token(
    baton_factory: Callable[..., Baton], browser: Any
) -> None:
    baton = baton_factory()
    admins = baton.submit(name="admins-private-run", kind="command", config={"command": "true"})
    create_user(baton.settings, *USER)
    user_api = baton.http.post("/auth/login", data={"username": USER[0], "password": USER[1]})
    headers = {"Authorization": f"Bearer {user_api.json()['access_token']}"}
    body = {"name": "mine", "kind": "command", "config": {"command": "true"}}
    own = baton.http.post("/api/v1/experiments", json=body, headers=headers).json()["id"]

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    base = baton.stack.url
    _log_in(page, base, *USER)

    response = page.goto(f"{base}/ui/experiments/{admins}")
    assert response.status == 404
    assert "admins-private-run" not in page.content()
    response = page.goto(f"{base}/ui/experiments/{own}")
    assert response.status == 200 and page.inner_text("h1").startswith("mine")

    # A form that posts without the session's CSRF token, as another site's page would.
    with page.expect_navigation() as navigation:
        page.evaluate(
            """(action) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = action;
                document.body.appendChild(form);
                form.submit();
            }""",
            f"/ui/experiments/{own}/cancel",
        )
    assert navigation.value.status == 403
    assert "CSRF" in page.content()
    still = baton.http.get(f"/api/v1/experiments/{own}", headers=headers).json()
    assert still["status"] == "queued"
    context.close()

    # Without JavaScript: log in with the plain form, read the pages (they just don't update).
    no_js = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = no_js.new_page()
    _log_in(page, base, *USER, target="/ui/experiments")
    page.click(f"a[href='/ui/experiments/{own}']")
    assert page.inner_text("h1").startswith("mine")
    assert page.inner_text("[data-live=summary] .badge") == "queued"
    no_js.close()
