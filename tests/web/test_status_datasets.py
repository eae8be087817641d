"""The status page's data-scientist parts: publisher names, grouped fetches, a dataset's info page."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import FakeService
from tests.web.test_status import log_in


async def test_publisher_names_beside_ids(client: Any, service: FakeService) -> None:
    await log_in(client)
    text = await (await client.get("/")).text()
    assert 'title="c-south">south (c-south…)' in text  # peers and the datasets' publisher
    assert "south/imagenet@1" in text and "south/mnist@2" in text  # transfers and landed, by name


async def test_repeated_fetches_of_one_dataset_are_one_row(client: Any, service: FakeService) -> None:
    job = service.state["jobs"][0]
    service.state["jobs"] = [job] + [
        {**job, "id": f"f-old{i}", "state": "failed", "error": f"peer gone {i}", "created": i} for i in range(3)
    ]
    await log_in(client)
    text = await (await client.get("/")).text()
    assert text.count('class="job"') == 1
    assert "3 earlier fetches" in text and "peer gone 2" in text


async def test_a_landed_dataset_info_is_one_click_away(client: Any, service: FakeService) -> None:
    service.catalog.append({
        "id": "m1", "name": "mnist", "version": "2", "publisher": "c-south", "description": "digits <b>bold</b>",
        "tags": [], "format": "parquet", "total_size": 1024, "schema": [{"name": "pixels", "type": "binary"}],
        "files": [{"path": "part-0.parquet", "size": 1024}],
    })
    await log_in(client)
    text = await (await client.get("/")).text()
    assert 'href="/dataset?ref=c-south/mnist%402"' in text
    page = await client.get("/dataset", params={"ref": "c-south/mnist@2"})
    text = await page.text()
    assert page.status == 200
    for needle in ("south", "c-south", "<code>pixels</code>", "part-0.parquet", "1,200 rows",
                   "file:///data/mnist/2", 'p2pdata.load("mnist@2")', "digits &lt;b&gt;bold&lt;/b&gt;"):
        assert needle in text, needle
    missing = await client.get("/dataset", params={"ref": "nope@1"})
    assert missing.status == 404 and "no dataset nope@1" in await missing.text()
