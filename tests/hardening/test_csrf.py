"""A web page on another loopback port attacks the control API through a logged-in browser."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from p2pdata.catalog import Identity, encode_public_key
from tests.hardening.attacker import Attacker
from tests.web.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]

PLANTED = encode_public_key(Identity.generate().public_key)


def _attack_page(control: str) -> str:
    """What a notebook or dev server on 127.0.0.1:<port> could serve: a text/plain form that
    posts JSON (no CORS preflight), and a no-cors fetch with the browser's cookies."""
    field = json.dumps({"key": PLANTED, "name": "planted", "pad": ""})[:-2]  # ...,"pad":"=..."}
    return f"""<!doctype html><html><body>
<form id="f" method="post" enctype="text/plain" action="{control}/v1/trust">
<input type="hidden" name='{field}' value='"}}'></form>
<script>
fetch("{control}/v1/peers", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{url: "http://127.0.0.9:1"}})}})
  .finally(() => {{ document.title = "fetched"; document.getElementById("f").submit(); }});
</script></body></html>"""


@pytest.fixture
def evil_page() -> Iterator[Attacker]:
    pages: dict[str, str] = {}

    def setup(app: web.Application) -> None:
        async def page(_: web.Request) -> web.Response:
            return web.Response(text=pages["attack"], content_type="text/html")
        app.router.add_get("/", page)

    attacker = Attacker(setup)
    attacker.pages = pages  # type: ignore[attr-defined]
    yield attacker
    attacker.close()


def test_a_page_on_another_loopback_port_cannot_use_the_cookie(make_daemon: Any, evil_page: Any) -> None:
    from playwright.sync_api import sync_playwright

    alpha = make_daemon("alpha")
    control = alpha.runtime["control_url"]
    evil_page.pages["attack"] = _attack_page(control)
    link = alpha.cli("status", "--web").strip()
    assert alpha.cli_json("status", "--web")["url"].startswith(f"{control}/login/")  # for scripts

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(link)  # logged in: the SameSite=Strict cookie is set for 127.0.0.1
            with page.expect_navigation(url=f"{control}/v1/trust") as navigation:
                page.goto(evil_page.url)
            assert navigation.value.status == 403  # the form post
            assert "Origin" in page.content()

            # The status page's own login form (same origin, a form post) still works.
            page.goto(f"{control}/login")
            page.fill("input[name=token]", (alpha.home / "control.token").read_text().strip())
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_url(f"{control}/")
        finally:
            browser.close()

    assert alpha.cli_json("trust", "list") == []
    assert alpha.cli_json("peers") == []


def test_dns_rebinding_and_form_shaped_requests_are_refused(make_daemon: Any) -> None:
    alpha = make_daemon("alpha")
    address = urlsplit(alpha.runtime["control_url"])
    token = (alpha.home / "control.token").read_text().strip()

    def call(method: str, headers: dict[str, str], body: str | None = None) -> int:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        try:
            connection.request(method, "/v1/trust", body=body, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()

    # A name an attacker's DNS answered with 127.0.0.1: the browser sends its own Host.
    assert call("GET", {"Host": f"rebind.example:{address.port}",
                        "Authorization": f"Bearer {token}"}) == 403
    # The cookie alone, without a JSON body or the custom header: what a form can send.
    cookie = {"Cookie": f"p2pdata_token={token}", "Content-Type": "text/plain"}
    assert call("POST", cookie, json.dumps({"key": PLANTED})) == 403
    assert alpha.cli_json("trust", "list") == []
    assert call("POST", {**cookie, "Content-Type": "application/json"}, json.dumps({"key": PLANTED})) == 200
    assert call("GET", {"Authorization": f"Bearer {token}"}) == 200
