"""End to end in headless Chromium: the page follows a real fetch between two real daemons."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from p2pdata.devcluster import wait_for
from tests.web.conftest import TOKEN, FakeService, make_app

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
MIB = 1024 * 1024

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]


def _bar(page: Any) -> tuple[int, int] | None:
    """(value, max) of the first transfer's progress bar, or None while there is none."""
    return page.evaluate(
        "() => { const b = document.querySelector('#transfers progress');"
        " return b ? [Number(b.value), Number(b.max)] : null; }"
    )


def test_page_follows_a_real_fetch_until_landed(make_daemon: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    source = tmp_path / "source"
    source.mkdir()
    for index in range(4):
        (source / f"part-{index}.bin").write_bytes(os.urandom(3 * MIB))
    # Throttled upload: the 12 MiB take several seconds, long enough to watch the bar move.
    alpha = make_daemon("alpha", transfer={"upload_limit": 2 * MIB})
    alpha.cli("publish", str(source), "--name", "frames", "--version", "1", "--description", "video frames")
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url], "sync_interval": 1})
    gamma.cli("trust", "add", alpha.cluster_id)
    wait_for(lambda: gamma.cli_json("search", "frames"), what="gamma to hold alpha's catalog")
    link = gamma.cli("status", "--web").strip()
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(link)
            assert page.url == link.split("/login/")[0] + "/"  # the one-time code left the address bar
            expect(page.locator("#datasets")).to_contain_text("frames")
            expect(page.locator("#live-state")).to_have_text("live")  # EventSource connected

            gamma.cli_json("fetch", "frames@1", "--detach")
            # The row arrives by a live refresh, then the bar advances from progress events.
            first = wait_for(lambda: (b := _bar(page)) and 0 < b[0] < b[1] and b, timeout=30,
                             what="the progress bar to start")
            wait_for(lambda: (b := _bar(page)) and b[0] > first[0], timeout=30, what="the progress bar to advance")
            # Bytes per peer, under the peer's name: the daemon maps torrent endpoints to publishers.
            expect(page.locator("#transfers ul.sources")).to_contain_text("alpha: ")
            page.screenshot(path=str(ARTIFACTS / "status-transferring.png"), full_page=True)

            expect(page.locator("#landed")).to_contain_text("frames@1", timeout=60_000)
            expect(page.locator("#transfers .badge").first).to_have_text("landed")
            page.screenshot(path=str(ARTIFACTS / "status-landed.png"), full_page=True)
        finally:
            browser.close()


async def test_page_follows_a_simulated_fetch(service: FakeService) -> None:
    """The browser half on its own: login form, EventSource, live bar, live landing, against a fake daemon."""
    from playwright.async_api import async_playwright, expect

    service.state.update(jobs=[], landed=[])
    total = 40 * MIB
    job: dict[str, Any] = {"id": "f-live", "ref": "c-south/imagenet@1", "state": "queued", "done_bytes": 0,
                           "total_bytes": total, "error": None, "tier": "HOT", "uri": None, "created": 1}

    async def simulate() -> None:
        service.state["jobs"] = [job]
        service.events.emit("fetch.state", job=job["id"], state="queued", error=None)
        job["state"] = "transferring"
        service.events.emit("fetch.state", job=job["id"], state="transferring", error=None)
        for step in range(1, 11):
            await asyncio.sleep(0.3)
            job["done_bytes"] = step * total // 10
            service.events.emit("fetch.progress", job=job["id"], done_bytes=job["done_bytes"], total_bytes=total,
                                rate=4 * MIB, eta=(10 - step) * 0.3, peers=2)
        job.update(state="landed", uri="file:///data/imagenet/1")
        service.state["landed"] = [{"manifest_id": "m2", "ref": job["ref"], "uri": job["uri"], "tier": "HOT",
                                    "landed": int(time.time())}]
        service.events.emit("fetch.state", job=job["id"], state="landed", error=None)
        service.events.emit("dataset.landed", job=job["id"], ref=job["ref"], uri=job["uri"])

    ARTIFACTS.mkdir(exist_ok=True)
    async with TestServer(make_app(service)) as server, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            await page.goto(str(server.make_url("/")))
            assert page.url.endswith("/login")  # no cookie yet
            await page.fill("#token", TOKEN)
            await page.click("button[type=submit]")
            await expect(page.locator("#cluster")).to_contain_text("c-abc123")
            await expect(page.locator("#live-state")).to_have_text("live")

            driver = asyncio.create_task(simulate())
            bar = page.locator("#transfers progress")
            await expect(bar).to_have_attribute("value", re.compile(r"^[1-9]\d*$"))
            first = int(await bar.get_attribute("value") or 0)
            await page.wait_for_function(
                f"() => Number(document.querySelector('#transfers progress').value) > {first}")
            assert first < total
            await expect(page.locator("#transfers .progress-text")).to_contain_text("4.0 MiB/s")
            await page.screenshot(path=str(ARTIFACTS / "status-simulated-transferring.png"), full_page=True)

            await driver
            await expect(page.locator("#landed")).to_contain_text("file:///data/imagenet/1")
            await expect(page.locator("#transfers .badge").first).to_have_text("landed")
            await page.screenshot(path=str(ARTIFACTS / "status-simulated-landed.png"), full_page=True)
        finally:
            await browser.close()


async def test_page_charts_each_peer_and_opens_the_landed_dataset(service: FakeService) -> None:
    """A live throughput chart per transfer and per peer (the slow peer shows), then the
    landed dataset's info one click away."""
    from playwright.async_api import async_playwright, expect

    service.state.update(jobs=[], landed=[])
    total = 40 * MIB
    job: dict[str, Any] = {"id": "f-chart", "ref": "c-south/imagenet@1", "state": "transferring",
                           "done_bytes": 0, "total_bytes": total, "error": None, "tier": "HOT", "uri": None,
                           "created": 1}
    service.state["jobs"] = [job]
    step_done = asyncio.Event()

    async def simulate() -> None:
        fast = slow = 0
        for _ in range(12):
            await asyncio.sleep(0.25)
            fast, slow = fast + 3 * MIB, slow + 64 * 1024  # the east peer trickles
            job["done_bytes"] = fast + slow
            service.events.emit("fetch.progress", job=job["id"], done_bytes=fast + slow, total_bytes=total,
                                rate=12 * MIB, eta=3.0, peers=2, sources={"south": fast, "10.0.0.9:6881": slow})
        step_done.set()

    async with TestServer(make_app(service)) as server, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            await page.goto(str(server.make_url("/login")))
            await page.fill("#token", TOKEN)
            await page.click("button[type=submit]")
            await expect(page.locator("#live-state")).to_have_text("live")
            await expect(page.locator("#transfers")).to_contain_text("south/imagenet@1")  # the publisher's name

            driver = asyncio.create_task(simulate())
            chart = page.locator('.chart[data-job="f-chart"] svg polyline')
            await expect(chart).to_have_count(3)  # the transfer, and each of the two peers
            sources = page.locator("#transfers ul.sources li")
            await expect(sources.filter(has_text="south")).to_contain_text(re.compile(r"MiB/s"))
            await expect(sources.filter(has_text="10.0.0.9:6881")).to_contain_text(re.compile(r"KiB/s"))
            points = await chart.nth(1).get_attribute("points")
            assert points and len(points.split()) >= 2
            await driver
            await page.screenshot(path=str(ARTIFACTS / "status-per-peer-chart.png"), full_page=True)

            job.update(state="landed", uri="file:///data/imagenet/1")
            service.state["landed"] = [{"manifest_id": "m2", "ref": job["ref"], "uri": job["uri"], "tier": "HOT",
                                        "landed": int(time.time())}]
            service.events.emit("fetch.state", job=job["id"], state="landed", error=None)
            await page.locator("#landed a.info").click()
            await expect(page.locator("#dataset")).to_contain_text("file:///data/imagenet/1")
            await expect(page.locator("#schema")).to_contain_text("label")
            await expect(page.locator("#dataset .publisher")).to_contain_text("south")
            await page.screenshot(path=str(ARTIFACTS / "status-dataset-info.png"), full_page=True)
        finally:
            await browser.close()
