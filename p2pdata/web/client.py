"""The CLI's side of the control API."""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from p2pdata.config import Config
from p2pdata.errors import Ambiguous, DaemonNotRunning, NotFound, P2pdataError

_REFUSALS: dict[int, type[P2pdataError]] = {404: NotFound, 409: Ambiguous}  # as the daemon maps them

# Reads answer at once; changes may hash or move data for minutes (publish, tier --move).
READ_TIMEOUT = 30.0
CHANGE_TIMEOUT = 600.0


class ControlClient:
    def __init__(self, config: Config, *, read_timeout: float = READ_TIMEOUT) -> None:
        self.config = config
        self.read_timeout = read_timeout
        try:
            self.token = config.token_file.read_text().strip()
        except FileNotFoundError:
            raise DaemonNotRunning(
                f"no daemon has run in {config.home} (no {config.token_file.name}); start one with `p2pdata daemon`"
            ) from None
        self.socket = config.control.socket
        self.base = f"http://{config.control.host}:{config.control.port}"
        # A running daemon records what it really bound (the port may have been 0).
        bound = _recorded_control_url(config.home / "daemon.json")
        if bound.startswith("unix:"):
            self.socket = bound.removeprefix("unix:")
        elif bound:
            self.base = bound
        if self.socket:
            self.base = "http://localhost"
        # A wildcard bind is reached on loopback; https is pinned to the daemon's own certificate.
        self.base = self.base.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
        self._ssl: aiohttp.Fingerprint | bool = True
        if self.base.startswith("https:") and config.control_tls:
            self._ssl = aiohttp.Fingerprint(_certificate_sha256(config.control_tls[0]))

    def _session(self, timeout: float | None) -> aiohttp.ClientSession:
        connector = (aiohttp.UnixConnector(path=self.socket) if self.socket
                     else aiohttp.TCPConnector(ssl=self._ssl))
        return aiohttp.ClientSession(
            connector=connector,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def call(self, method: str, path: str, payload: dict[str, Any] | None = None, **query: Any) -> Any:
        params = {k: str(v) for k, v in query.items() if v is not None}
        timeout = self.read_timeout if method == "GET" else CHANGE_TIMEOUT
        try:
            async with (
                self._session(timeout) as session,
                session.request(method, self.base + path, json=payload, params=params) as response,
            ):
                text = await response.text(errors="replace")
        except TimeoutError:  # before ClientConnectionError: aiohttp's read timeouts are both
            raise P2pdataError(
                f"the daemon at {self.base} did not answer {method} {path} within {timeout:g} s: "
                f"it runs but is stuck or overloaded; restart it (`p2pdata daemon`) if this persists"
            ) from None
        except aiohttp.ClientConnectionError:
            raise DaemonNotRunning(
                f"no daemon is answering at {self.base} for {self.config.home}; start one with `p2pdata daemon`"
            ) from None
        try:
            data = json.loads(text)
        except ValueError:  # aiohttp's own plain-text errors (500, 413, 404 of a route): no traceback
            data = None
        if response.status == 401:  # not this home's daemon, or this home was initialised again
            raise P2pdataError(
                f"the daemon at {self.base} refused the control token of {self.config.home}: it is "
                "another home's daemon (check --home or P2PDATA_HOME), or this home's daemon was "
                "started before the home was initialised again (restart it)")
        if response.status >= 400:
            if isinstance(data, dict) and data.get("message"):
                # The daemon's kind of refusal survives the trip: a notebook can catch NotFound.
                raise _REFUSALS.get(response.status, P2pdataError)(data["message"])
            detail = text.strip()[:500] or response.reason or ""
            raise P2pdataError(f"control API {method} {path}: HTTP {response.status} {detail}".rstrip())
        if data is None:
            raise P2pdataError(f"control API {method} {path}: not JSON (HTTP {response.status})")
        return data

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Server-sent events from the daemon, decoded."""
        try:
            async with self._session(None) as session, session.get(self.base + "/v1/events") as response:
                async for line in response.content:
                    if line.startswith(b"data: "):
                        yield json.loads(line[6:])
        except aiohttp.ClientConnectionError:
            raise DaemonNotRunning(f"lost the daemon at {self.base}") from None


def _recorded_control_url(runtime: Path) -> str:
    """The control URL a running daemon recorded; "" if none, or the record is unreadable
    (then the configured address is tried, and a dead one says no daemon answers)."""
    try:
        recorded = json.loads(runtime.read_text())
    except (OSError, ValueError):
        return ""
    bound = recorded.get("control_url", "") if isinstance(recorded, dict) else ""
    return bound if isinstance(bound, str) else ""


def _certificate_sha256(path: Path) -> bytes:
    """SHA-256 of the first certificate in a PEM file, as aiohttp.Fingerprint pins it."""
    pem = path.read_text()
    try:
        der = ssl.PEM_cert_to_DER_cert(pem[: pem.index("-----END CERTIFICATE-----") + 25])
    except ValueError as exc:
        raise P2pdataError(f"{path}: no PEM certificate for the control API ({exc})") from None
    return hashlib.sha256(der).digest()
