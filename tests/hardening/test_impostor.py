"""A peer at another URL claims a trusted cluster's identity and relays to the real owner."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web

from p2pdata.catalog import Identity
from p2pdata.catalog.access import sign_request
from p2pdata.devcluster import wait_for
from p2pdata.restricted import GRANTED_PATH
from tests.hardening.attacker import Attacker

_PASSED = ("ETag", "Content-Type", "X-P2pdata-Manifest-Signature")


class Relay(Attacker):
    """Answers every GET with what the real owner answers to the same request: its info
    (with its proof), its catalog, and whatever the caller's signed headers unlock."""

    def __init__(self) -> None:
        self.owner = ""
        self.answers: list[tuple[str, int]] = []  # (path, owner's status)
        super().__init__(self._routes)

    def _routes(self, app: web.Application) -> None:
        async def relay(request: web.Request) -> web.Response:
            headers = {k: v for k, v in request.headers.items() if k.lower().startswith(("x-p2pdata", "if-"))}
            async with aiohttp.ClientSession() as session, \
                    session.get(self.owner + request.path_qs, headers=headers) as answer:
                body = await answer.read()
                self.answers.append((request.path, answer.status))
                return web.Response(status=answer.status, body=body,
                                    headers={k: answer.headers[k] for k in _PASSED if k in answer.headers})

        app.router.add_get("/{tail:.*}", relay)


@pytest.fixture
def relay() -> Iterator[Relay]:
    attacker = Relay()
    yield attacker
    attacker.close()


def test_an_impostor_relaying_to_the_owner_gets_nothing_restricted(make_daemon: Any, relay: Relay,
                                                                  tmp_path: Path) -> None:
    gamma = make_daemon("gamma", start=False,
                        discovery={"static_peers": [relay.url], "sync_interval": 1})
    alpha = make_daemon("alpha", restricted={"show": "hidden"})
    relay.owner = alpha.peer_url
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "labels.csv").write_text("a,b\n1,2\n")
    alpha.cli("publish", str(secret), "--name", "secret", "--version", "1",
              "--access", "restricted", "--allow", gamma.cluster_id)
    gamma.start()
    gamma.cli("trust", "add", alpha.cluster_id)

    def relay_row() -> dict[str, Any] | None:
        row = next((p for p in gamma.cli_json("peers") if p["url"] == relay.url), None)
        return row if row and row["catalog_version"] else None

    row = wait_for(relay_row, what="gamma to sync alpha's public catalog through the relay")
    assert row["cluster_id"] == alpha.cluster_id and row["proven"] is False
    # The real owner, added later, is proven, and the hidden dataset comes from it alone.
    gamma.cli("peers", "add", alpha.peer_url)
    wait_for(lambda: gamma.cli_json("search", "secret"), what="gamma to list what alpha grants it")
    proven = {p["url"]: p["proven"] for p in gamma.cli_json("peers")}
    assert proven == {relay.url: False, alpha.peer_url: True}
    assert not [a for a in relay.answers if a[0].startswith("/v1/restricted/")], relay.answers

    # A request gamma signed for the relay's URL, passed on to alpha, is refused there.
    signed = sign_request(Identity.load(gamma.home), "GET", GRANTED_PATH, alpha.cluster_id,
                          now=int(time.time()), url=relay.url)
    answer = requests.get(relay.url + GRANTED_PATH, headers=signed, timeout=10)
    assert answer.status_code == 401 and "not for this peer API" in answer.text


def test_a_peer_that_cannot_prove_the_key_it_claims_is_refused(make_daemon: Any) -> None:
    from tests.hardening.attacker import FakePeer

    alpha = make_daemon("alpha")
    liar = FakePeer(Identity.generate())
    try:
        # It shows alpha's identity with a proof made by its own key.
        real = requests.get(alpha.peer_url + "/v1/info", timeout=10).json()
        liar.info_overrides = {"cluster_id": real["cluster_id"], "public_key": real["public_key"],
                               "proof": "A" * 88}
        gamma = make_daemon("gamma", discovery={"static_peers": [liar.url], "sync_interval": 1})
        error = wait_for(lambda: (rows := gamma.cli_json("peers")) and rows[0]["error"], what="the liar's sync")
        assert "cannot prove it holds that cluster's key" in error
    finally:
        liar.close()
