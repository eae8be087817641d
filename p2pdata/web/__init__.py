"""The HTTP faces of the daemon: peer API, control API, status page and metrics, and the CLI's client."""

from p2pdata.web.client import ControlClient
from p2pdata.web.control_api import control_app
from p2pdata.web.guard import ConnectionGate, ConnectionLimits, GuardedSite, guarded_runner
from p2pdata.web.peer_api import peer_app
from p2pdata.web.ratelimit import SignedCallers
from p2pdata.web.status import status_routes

__all__ = [
    "ConnectionGate",
    "ConnectionLimits",
    "ControlClient",
    "GuardedSite",
    "SignedCallers",
    "control_app",
    "guarded_runner",
    "peer_app",
    "status_routes",
]
