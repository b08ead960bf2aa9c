"""CSP form-action in a real browser: the consent form's redirect to the client gets through.

Chromium applies form-action to the redirects that follow a form submission, so the consent
page's policy must name the client's redirect URI (authserver.middleware.allow_form_target).
Debian's chromium, as in tests/e2e (.ci/run installs it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REDIRECT_URI
from ..factories import PASSWORD
from .test_headers import authorize_query

CHROMIUM = os.environ.get("AUTHSERVER_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")


@pytest.fixture
def chromium(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread while the test also uses the ORM.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        yield browser
        browser.close()


@pytest.mark.parametrize("allowed", [True, False], ids=["redirect-uri-allowed", "self-only"])
def test_consent_redirects_to_the_client_only_because_form_action_names_it(
    live_server, user, web_client, monkeypatch, allowed, chromium
):
    # chromium comes last: Playwright's sync API runs the test in a greenlet of its own, and
    # ORM calls made there (fixtures included) would get a database connection of their own.
    if not allowed:
        import authserver.oauth.views

        monkeypatch.setattr(authserver.oauth.views, "allow_form_target", lambda *args: None)
    page = chromium.new_page()
    console: list[str] = []
    requested: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.set_default_timeout(15000)

    page.goto(f"{live_server.url}/oauth/authorize?{authorize_query(web_client.client_id)}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_selector("input[name=allow]")
    page.on("request", lambda request: requested.append(request.url))
    if allowed:
        with page.expect_request(lambda request: request.url.startswith(f"{REDIRECT_URI}?code=")):
            page.click("input[name=allow]")
    else:
        with page.expect_console_message(lambda message: "form-action" in message.text):
            page.click("input[name=allow]")

    page.close()  # nothing left in flight towards the live server

    reached_client = any(url.startswith(f"{REDIRECT_URI}?code=") for url in requested)
    blocked = [text for text in console if "form-action" in text]
    assert reached_client is allowed
    assert bool(blocked) is not allowed
