"""/metrics: the daemon's own registry, fed by events and by status() at scrape time."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.web.conftest import TOKEN, FakeService

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }


async def test_metrics_need_the_token(client: Client) -> None:
    assert (await client.get("/metrics")).status == 401


async def test_gauges_come_from_status(client: Client) -> None:
    samples = await scrape(client)
    assert samples[("p2pdata_peers", (("state", "healthy"),))] == 1
    assert samples[("p2pdata_peers", (("state", "rejected"),))] == 1
    assert samples[("p2pdata_peers", (("state", "unreachable"),))] == 0
    assert samples[("p2pdata_fetch_jobs", (("state", "transferring"),))] == 1
    assert samples[("p2pdata_training_runs", (("state", "running"),))] == 1
    assert samples[("p2pdata_training_runs", (("state", "failed"),))] == 0
    assert samples[("p2pdata_datasets_landed", ())] == 1
    run_info = (("engine", "yarn"), ("engine_id", "application_17_0001"),
                ("engine_state", "RUNNING"),
                ("engine_url", "http://rm.example:8088/proxy/application_17_0001/"),
                ("job", "train-mnist"), ("run", "r-1"), ("state", "running"))
    assert samples[("p2pdata_training_run_info", run_info)] == 1
    assert samples[("p2pdata_staging_used_bytes", ())] == 3 * 1024 * 1024
    assert samples[("p2pdata_staging_budget_bytes", ())] == 1024**3


async def test_counters_follow_events(client: Client, service: FakeService) -> None:
    emit = service.events.emit
    emit("fetch.state", job="f-0001", state="transferring", error=None)
    emit("fetch.progress", job="f-0001", done_bytes=100, total_bytes=300, rate=50.0, eta=4, peers=2)
    emit("fetch.progress", job="f-0001", done_bytes=250, total_bytes=300, rate=75.0, eta=1, peers=2)
    emit("peer.failed", url="http://x", message="refused")
    emit("peer.rejected", url="http://y", reason="BadSignature", message="bad")
    emit("peer.rejected", url="http://y", reason="Rollback", message="old")
    emit("verify.failed", what="data", job="f-0001")
    await asyncio.sleep(0.01)
    samples = await scrape(client)
    assert samples[("p2pdata_received_bytes_total", ())] == 250
    assert samples[("p2pdata_transfer_rate_bytes_per_second", (("direction", "in"),))] == 75.0
    assert samples[("p2pdata_catalog_sync_failures_total", (("reason", "unreachable"),))] == 1
    assert samples[("p2pdata_catalog_sync_failures_total", (("reason", "BadSignature"),))] == 1
    assert samples[("p2pdata_catalog_sync_failures_total", (("reason", "Rollback"),))] == 1
    assert samples[("p2pdata_verification_failures_total", (("what", "catalog"),))] == 2
    assert samples[("p2pdata_verification_failures_total", (("what", "data"),))] == 1

    emit("fetch.state", job="f-0001", state="landed", error=None)
    emit("dataset.landed", job="f-0001", ref="c-south/imagenet@1", uri="file:///x")
    await asyncio.sleep(0.01)
    samples = await scrape(client)
    assert samples[("p2pdata_landings_total", ())] == 1
    assert samples[("p2pdata_transfer_rate_bytes_per_second", (("direction", "in"),))] == 0


async def test_upload_figures_from_status_transfer_section(client: Client, service: FakeService) -> None:
    service.state["transfer"] = {"uploaded": 4096, "upload_rate": 512.0}
    samples = await scrape(client)
    assert samples[("p2pdata_sent_bytes", ())] == 4096
    assert samples[("p2pdata_transfer_rate_bytes_per_second", (("direction", "out"),))] == 512.0


async def test_global_registry_is_untouched(client: Client) -> None:
    await scrape(client)
    assert REGISTRY.get_sample_value("p2pdata_received_bytes_total") is None
