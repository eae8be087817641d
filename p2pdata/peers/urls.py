"""Peer URLs: one normal form, so a peer found by zeroconf and listed in config is one peer."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from p2pdata.peers.errors import InvalidPeerUrl

_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048


def normalize_peer_url(url: str) -> str:
    """Return `scheme://host:port` (lower-case scheme and host, explicit port, no trailing slash).

    Anything beyond a base URL (path, query, fragment, user info) is refused rather than
    dropped: a config entry with a path is a mistake the operator should see.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidPeerUrl(f"peer URL {url!r} is empty; expected http://HOST:PORT")
    text = url.strip()
    if len(text) > MAX_URL_LENGTH:
        raise InvalidPeerUrl(f"peer URL is {len(text)} characters long, over {MAX_URL_LENGTH}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidPeerUrl(f"peer URL {text!r} is not valid: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidPeerUrl(f"peer URL {text!r}: scheme must be http or https")
    if port == 0:
        raise InvalidPeerUrl(f"peer URL {text!r}: port 0 is not a port one can connect to")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidPeerUrl(f"peer URL {text!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidPeerUrl(f"peer URL {text!r} must not carry user info")
    if parts.path not in ("", "/") or parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InvalidPeerUrl(
            f"peer URL {text!r} must be a base URL (scheme://host:port) without path or query"
        )
    if any(ch.isspace() for ch in host):
        raise InvalidPeerUrl(f"peer URL {text!r} has whitespace in its host")
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name, not an address
    return f"{scheme}://{host}:{port if port is not None else _DEFAULT_PORTS[scheme]}"
