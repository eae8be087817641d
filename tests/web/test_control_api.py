"""The control API names what is wrong with a request's fields."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.web.conftest import TOKEN, FakeService

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_unknown_or_missing_fields_are_refused_by_name(client: Client, service: FakeService) -> None:
    response = await client.post("/v1/fetch", json={"ref": "x@1", "teir": "hot"}, headers=AUTH)
    assert response.status == 400
    assert "unknown field(s) teir" in (await response.json())["message"]

    response = await client.post("/v1/publish", json={"directory": "/d", "nmae": "x"}, headers=AUTH)
    message = (await response.json())["message"]
    assert response.status == 400 and "unknown field(s) nmae; missing name, version" in message

    response = await client.get("/v1/search", params={"q": "image", "min-size": "1"}, headers=AUTH)
    assert response.status == 400 and "min-size" in (await response.json())["message"]
    assert service.searches == []  # not searched with the filter dropped
    response = await client.get("/v1/search", params={"q": "image", "format": "parquet"}, headers=AUTH)
    assert response.status == 200 and service.searches == [("image", {"format": "parquet"})]
