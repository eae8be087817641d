"""PeerClient against real https peer APIs on loopback: a private CA, client certificates, and
what an untrusted certificate looks like."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from p2pdata.errors import ConfigError
from p2pdata.peers import PeerClient, PeerTlsError, PeerUnreachable, tls_context
from tests.peers.test_client import IDENTITY, info_ok
from tests.peers.tls import TestCA

Serve = Callable[[ssl.SSLContext], Awaitable[str]]


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture
async def serve_tls() -> AsyncIterator[Serve]:
    """Start the /v1/info route over TLS with the given server context; its https URL."""
    runners: list[web.AppRunner] = []

    async def start(context: ssl.SSLContext) -> str:
        app = web.Application()
        app.router.add_get("/v1/info", info_ok)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        runners.append(runner)
        return f"https://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def server_context(ca: TestCA, *, client_ca: Path | None = None) -> ssl.SSLContext:
    leaf = ca.issue("peer")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    if client_ca is not None:  # a peer API behind a proxy that wants client certificates
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


async def test_private_ca_is_trusted_only_when_configured(ca: TestCA, serve_tls: Serve) -> None:
    url = await serve_tls(server_context(ca))
    async with PeerClient(tls=tls_context(ca.cert)) as client:
        assert (await client.info(url)).cluster_id == IDENTITY.cluster_id
    async with PeerClient() as client:  # the system's CAs do not know ours
        with pytest.raises(PeerTlsError, match=r"TLS certificate not trusted \(.*issuer.*\); .*"
                                               r"\[discovery\] peer_ca_file") as caught:
            await client.info(url)
    assert caught.value.reason == "tls" and url in str(caught.value)
    other = TestCA(ca.directory / "other", "other-ca")
    async with PeerClient(tls=tls_context(other.cert)) as client:
        with pytest.raises(PeerTlsError, match="not trusted"):
            await client.info(url)


async def test_client_certificate_for_peers_that_ask(ca: TestCA, serve_tls: Serve) -> None:
    url = await serve_tls(server_context(ca, client_ca=ca.cert))
    client_leaf = ca.issue("lab-b", server=False)
    async with PeerClient(tls=tls_context(ca.cert, client_leaf.cert, client_leaf.key)) as client:
        assert (await client.info(url)).cluster_id == IDENTITY.cluster_id
    # Key and certificate in one file work too.
    both = ca.directory / "both.pem"
    both.write_bytes(client_leaf.cert.read_bytes() + client_leaf.key.read_bytes())
    async with PeerClient(tls=tls_context(ca.cert, both)) as client:
        assert (await client.info(url)).cluster_id == IDENTITY.cluster_id
    async with PeerClient(tls=tls_context(ca.cert)) as client:
        with pytest.raises(PeerUnreachable, match=r"closed the connection.*peer_client_cert"):
            await client.info(url)


def test_bad_tls_files_are_config_errors_naming_them(ca: TestCA, tmp_path: Path) -> None:
    assert tls_context() is None
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=r"nope\.pem.*peer_ca_file"):
        tls_context(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"garbage\.pem.*peer_ca_file"):
        tls_context(garbage)
    with pytest.raises(ConfigError, match=r"garbage\.pem.*peer_client_cert"):
        tls_context(ca.cert, garbage)
    leaf = ca.issue("lonely", server=False)
    with pytest.raises(ConfigError, match="without a client certificate"):
        tls_context(ca.cert, key_file=leaf.key)
    with pytest.raises(ConfigError, match=r"lonely\.pem.*ca\.pem"):  # a key that is not its key
        tls_context(ca.cert, leaf.cert, ca.cert)


async def test_https_url_of_a_plain_http_peer(serve) -> None:
    url = await serve({"/v1/info": info_ok})
    async with PeerClient() as client:
        with pytest.raises(PeerTlsError, match="TLS handshake failed"):
            await client.info(url.replace("http:", "https:"))
