"""A fake daemon service and a control app with the status routes, served on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from p2pdata.errors import NotFound
from p2pdata.events import EventHub
from p2pdata.web import control_app, status_routes
from p2pdata.web.status import LoginCodes

TOKEN = "s3cret-token-for-tests"


class FakeService:
    """Just what the status page calls; the data has the shapes `Daemon.status()` returns."""

    def __init__(self, tmp: Path) -> None:
        self.token = TOKEN
        self.events = EventHub()
        self.searches: list[tuple[str, dict[str, Any]]] = []
        now = int(time.time())
        log = tmp / "worker-0.log"
        log.write_text("".join(f"step {i} loss 0.{i}\n" for i in range(40)))
        self.state: dict[str, Any] = {
            "cluster": {"id": "c-abc123", "name": "north", "store": "local", "root": str(tmp / "store"),
                        "peer_url": "http://127.0.0.1:7001", "tiers_enforced": False,
                        "staging": {"used": 3 * 1024 * 1024, "budget": 1024**3, "path": str(tmp)}},
            "peers": [
                {"url": "http://10.0.0.2:7001", "cluster_id": "c-south", "state": "healthy", "source": "zeroconf",
                 "last_seen": now - 5, "failures": 0, "error": None, "catalog_version": 7},
                {"url": "http://10.0.0.3:7001", "cluster_id": "c-evil", "state": "rejected", "source": "static",
                 "last_seen": None, "failures": 2, "error": "BadSignature: <script>alert(1)</script>",
                 "catalog_version": None},
            ],
            "jobs": [
                {"id": "f-0001", "ref": "c-south/imagenet@1", "state": "transferring", "done_bytes": 10 * 1024**2,
                 "total_bytes": 40 * 1024**2, "error": None, "tier": "HOT", "uri": None, "created": now},
            ],
            "landed": [{"manifest_id": "m1", "ref": "c-south/mnist@2", "uri": "file:///data/mnist/2",
                        "tier": "ALL_SSD", "landed": now - 60}],
            "runs": [{"id": "r-1", "job": "train-mnist", "dataset": "mnist@2", "state": "running",
                      "reason": None, "exit_code": None, "created": now - 30, "started": now - 30,
                      "finished": None, "logs": [str(log)], "engine": "yarn",
                      "engine_info": {"id": "application_17_0001", "state": "RUNNING",
                                      "url": "http://rm.example:8088/proxy/application_17_0001/"}}],
            "published": [],
            "publishers": {"c-south": "south", "c-abc123": "north"},
        }
        self.catalog = [
            {"id": "m2", "name": "imagenet", "version": "1", "publisher": "c-south", "description": "Images",
             "tags": ["vision"], "format": "parquet", "total_size": 40 * 1024**2,
             "schema": [{"name": "image", "type": "binary"}, {"name": "label", "type": "int64"}],
             "files": [{"path": "part-0.parquet", "size": 40 * 1024**2}]},
        ]

    def status(self) -> dict[str, Any]:
        return self.state

    def dataset_info(self, ref: str) -> dict[str, Any]:
        landed = {item["ref"]: item for item in self.state["landed"]}
        for d in self.catalog:
            if ref in (f"{d['publisher']}/{d['name']}@{d['version']}", f"{d['name']}@{d['version']}"):
                where = landed.get(f"{d['publisher']}/{d['name']}@{d['version']}")
                return {**d, "publisher_name": self.state["publishers"].get(d["publisher"]), "rows": 1200,
                        "versions": [d["version"]], "access": "public", "license": "", "created": 0,
                        "landed": where and {k: where[k] for k in ("uri", "tier", "landed")}}
        raise NotFound(f"no dataset {ref} in any held catalog")

    async def search(self, query: str, **filters: Any) -> list[dict[str, Any]]:
        self.searches.append((query, filters))
        return [d for d in self.catalog if query.lower() in d["name"] and
                all(d.get(key) == value for key, value in filters.items())]


def make_app(service: FakeService, codes: LoginCodes | None = None) -> web.Application:
    # Exactly how the daemon mounts the page.
    app = control_app(service, service.token, open_paths=("/login", "/static/"))  # type: ignore[arg-type]
    status_routes(app, service, token=service.token, codes=codes)  # type: ignore[arg-type]
    return app


@pytest.fixture
def service(tmp_path: Path) -> FakeService:
    return FakeService(tmp_path)


@pytest.fixture
async def client(service: FakeService) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(service))) as test_client:
        yield test_client


async def log_in(client: TestClient[Any, Any]) -> None:
    response = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert response.status == 303
