"""Prometheus metrics for one daemon, on a registry of its own.

Two sources feed it:

- counters, updated by `Telemetry.consume` from the daemon's EventHub
  (bytes received, catalog sync failures, landings, verification failures);
- gauges, computed from `service.status()` at scrape time (peers by health,
  fetch jobs and training runs by state, staging use), so they are never stale.

Events counted: `fetch.progress` (bytes in, per-job rate), `fetch.state`,
`dataset.landed`, `peer.failed` (sync failure "unreachable"),
`peer.rejected` (sync failure by reason, and a catalog verification failure),
`verify.failed{what}` (data verification failures, when the daemon emits them).
Upload totals come from an optional `status()["transfer"]` section
(`uploaded`, `upload_rate`), the only place the daemon can know them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from p2pdata.fetch_states import ACTIVE_STATES, FINAL_STATES
from p2pdata.peers.health import PeerState
from p2pdata.training.machine import RunState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Telemetry:
    """What the event stream taught us: counters for Prometheus and the latest progress per job."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.progress: dict[str, dict[str, Any]] = {}  # job id -> latest fetch.progress event
        self._states: dict[str, str] = {}  # job id -> latest fetch state
        self._received = Counter(
            "p2pdata_received_bytes", "Verified dataset bytes received by fetch jobs.", registry=self.registry
        )
        self._sync_failures = Counter(
            "p2pdata_catalog_sync_failures", "Failed catalog syncs with a peer, by reason.",
            ["reason"], registry=self.registry,
        )
        self._landings = Counter(
            "p2pdata_landings", "Datasets landed in the store.", registry=self.registry
        )
        self._verification = Counter(
            "p2pdata_verification_failures", "Things that failed verification, by what they were.",
            ["what"], registry=self.registry,
        )
        self.registry.register(_StatusCollector(status, self))

    def consume(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "fetch.progress":
            job = str(event.get("job"))
            before = int(self.progress.get(job, {}).get("done_bytes") or 0)
            done = int(event.get("done_bytes") or 0)
            self._received.inc(max(0, done - before))
            self.progress[job] = event
        elif kind == "fetch.state":
            self._states[str(event.get("job"))] = str(event.get("state"))
        elif kind == "dataset.landed":
            self._landings.inc()
        elif kind == "peer.failed":
            self._sync_failures.labels(reason="unreachable").inc()
        elif kind == "peer.rejected":
            self._sync_failures.labels(reason=str(event.get("reason") or "unknown")).inc()
            self._verification.labels(what="catalog").inc()
        elif kind == "verify.failed":
            self._verification.labels(what=str(event.get("what") or "data")).inc()

    def receive_rate(self) -> float:
        """Sum of the latest rates of jobs not known to be finished."""
        return sum(
            float(event.get("rate") or 0)
            for job, event in self.progress.items()
            if self._states.get(job) not in FINAL_STATES
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StatusCollector(Collector):
    """Gauges read from `service.status()` at scrape time."""

    def __init__(self, status: Callable[[], dict[str, Any]], telemetry: Telemetry) -> None:
        self._status = status
        self._telemetry = telemetry

    def describe(self) -> list[Metric]:
        return []  # names depend on status(); nothing for the registry to check at registration

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        transfer = status.get("transfer") or {}

        rate = GaugeMetricFamily("p2pdata_transfer_rate_bytes_per_second", "Current transfer rate.",
                                 labels=["direction"])
        rate.add_metric(["in"], self._telemetry.receive_rate())
        rate.add_metric(["out"], float(transfer.get("upload_rate") or 0))
        yield rate

        sent = GaugeMetricFamily("p2pdata_sent_bytes", "Dataset bytes uploaded to peers by this daemon.")
        sent.add_metric([], float(transfer.get("uploaded") or 0))
        yield sent
        by_dataset = GaugeMetricFamily("p2pdata_dataset_sent_bytes",
                                       "Dataset bytes uploaded, per dataset.", labels=["dataset"])
        for row in transfer.get("datasets") or []:
            by_dataset.add_metric([str(row["dataset"])], float(row["sent"]))
        yield by_dataset

        yield _by_state("p2pdata_peers", "Known peers by health.",
                        [str(p.get("state")) for p in status.get("peers", [])], [s.value for s in PeerState])
        yield _by_state("p2pdata_fetch_jobs", "Fetch jobs by state.",
                        [str(j.get("state")) for j in status.get("jobs", [])], [*ACTIVE_STATES, *FINAL_STATES])
        yield _by_state("p2pdata_training_runs", "Training runs by state.",
                        [str(r.get("state")) for r in status.get("runs", [])], [s.value for s in RunState])
        yield _active_runs(status.get("runs", []))

        landed = GaugeMetricFamily("p2pdata_datasets_landed", "Datasets landed on this cluster.")
        landed.add_metric([], len(status.get("landed", [])))
        yield landed

        staging = staging_usage(status.get("cluster", {}).get("staging"))
        if staging["used"] is not None:
            used = GaugeMetricFamily("p2pdata_staging_used_bytes", "Bytes held in the local staging area.")
            used.add_metric([], staging["used"])
            yield used
        if staging["budget"] is not None:
            budget = GaugeMetricFamily("p2pdata_staging_budget_bytes", "Configured staging budget.")
            budget.add_metric([], staging["budget"])
            yield budget


def _active_runs(runs: list[dict[str, Any]]) -> GaugeMetricFamily:
    """One series per queued or running run, valued 1, labelled with where it runs (the YARN
    application id, its state and tracking URL); only live runs, so the series stay few."""
    family = GaugeMetricFamily(
        "p2pdata_training_run_info", "Queued and running training runs and where they run.",
        labels=["run", "job", "state", "engine", "engine_id", "engine_state", "engine_url"])
    for run in runs:
        if run.get("state") not in (RunState.QUEUED.value, RunState.RUNNING.value):
            continue
        info = run.get("engine_info") or {}
        family.add_metric([str(run.get("id")), str(run.get("job")), str(run.get("state")),
                           str(run.get("engine") or "local"), str(info.get("id") or ""),
                           str(info.get("state") or ""), str(info.get("url") or "")], 1)
    return family


def _by_state(name: str, doc: str, states: list[str], known: list[str]) -> GaugeMetricFamily:
    # Every known state is exported, at 0 when empty, so alerts on absent series are not needed.
    counts = dict.fromkeys(known, 0)
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    family = GaugeMetricFamily(name, doc, labels=["state"])
    for state, count in counts.items():
        family.add_metric([state], count)
    return family


def staging_usage(staging: dict[str, Any] | None) -> dict[str, Any]:
    """Staging as the daemon's status reports it: `used`, `budget` and `path`, None when absent."""
    staging = staging or {}
    return {key: staging.get(key) for key in ("used", "budget", "path")}
