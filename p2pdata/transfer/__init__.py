"""Swarm transfer: v2 torrents for datasets, one libtorrent session, swarm jobs.

Publish: `make_torrent(manifest.files, data_dir)` then `manifest.with_torrent(...)`.
Fetch: `job = await session.fetch(manifest, peers)`, then
`async for entry, path in job.completed_files()` to land files as they verify.
Seed: a finished fetch keeps seeding from staging; `session.seed(manifest, dir)`
serves landed data. The DHT (`DhtNode`) is a libtorrent session of its own.
Outside clients: `Tracker` answers BEP 3 announces for public torrents;
`with_trackers` and `magnet_link` make what a standard client needs.
"""

from p2pdata.transfer.bep44 import PutResult
from p2pdata.transfer.dht import DhtNode, DhtSettings, MutableItem
from p2pdata.transfer.session import (
    JobCancelled,
    Seed,
    SwarmJob,
    TransferSession,
    TransferSettings,
)
from p2pdata.transfer.staging import Staging, StagingLedger
from p2pdata.transfer.state import FileProgress, JobState, Progress
from p2pdata.transfer.torrents import choose_piece_size, magnet_link, make_torrent, with_trackers
from p2pdata.transfer.tracker import Tracker

__all__ = [
    "DhtNode",
    "DhtSettings",
    "FileProgress",
    "JobCancelled",
    "JobState",
    "MutableItem",
    "Progress",
    "PutResult",
    "Seed",
    "Staging",
    "StagingLedger",
    "SwarmJob",
    "Tracker",
    "TransferSession",
    "TransferSettings",
    "choose_piece_size",
    "magnet_link",
    "make_torrent",
    "with_trackers",
]
