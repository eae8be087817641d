"""The control API names what is wrong with a request's fields."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient

from p2pdata.daemon import Daemon
from p2pdata.fetching import Fetcher
from p2pdata.web.control_api import _FETCH_FIELDS, _PUBLISH_FIELDS, _PUBLISH_REQUIRED, _SEARCH_FIELDS
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


def _keywords(method: Callable[..., Any], *, required: bool = False) -> tuple[str, ...]:
    return tuple(p.name for p in inspect.signature(method).parameters.values()
                 if p.kind is p.KEYWORD_ONLY and not (required and p.default is not p.empty))


def test_the_fields_a_client_may_send_are_the_keywords_the_calls_take() -> None:
    assert set(_keywords(Daemon.publish)) == _PUBLISH_FIELDS
    assert _keywords(Daemon.publish, required=True) == _PUBLISH_REQUIRED
    assert {"ref", *_keywords(Fetcher.fetch)} == _FETCH_FIELDS  # Daemon.fetch passes them on
    assert set(_keywords(Daemon.fetch)) <= _FETCH_FIELDS
    assert {"q", *_keywords(Daemon.search)} == _SEARCH_FIELDS  # q: the query text
