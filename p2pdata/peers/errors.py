"""Peer errors: each names the peer and what was wrong, so `p2pdata peers` can show it as is."""

from __future__ import annotations

from p2pdata.errors import PeerError


class InvalidPeerUrl(PeerError):
    """A peer URL (from config, the CLI or a peer's answer) that is not http(s)://host:port."""


class PeerRequestError(PeerError):
    """A request to a peer failed; `peer` is its base URL and `reason` a short stable code."""

    reason = "error"

    def __init__(self, peer: str, detail: str) -> None:
        super().__init__(f"peer {peer}: {detail}")
        self.peer = peer
        self.detail = detail


class PeerUnreachable(PeerRequestError):
    """Connection refused, reset, DNS failure: nothing usable reached us."""

    reason = "unreachable"


class PeerTlsError(PeerRequestError):
    """TLS with the peer failed: its certificate is not trusted, or the handshake was refused."""

    reason = "tls"


class PeerTimeout(PeerRequestError):
    reason = "timeout"


class PeerHttpError(PeerRequestError):
    """The peer answered with an unexpected status (including any redirect)."""

    reason = "http-status"

    def __init__(self, peer: str, detail: str, status: int) -> None:
        super().__init__(peer, detail)
        self.status = status


class PeerTooLarge(PeerRequestError):
    reason = "too-large"


class PeerBadResponse(PeerRequestError):
    """The body is not what the API promises: undecodable, wrong types, bad lengths."""

    reason = "bad-response"
