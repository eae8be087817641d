"""The launcher: queues runs and supervises their workers through an engine.

Thin asyncio code around `RunMachine`: it has the run's engine start the workers, asks it
every `poll_interval` what it saw (ready, exited, the engine's own failure), feeds that to
the machine and carries out the machine's actions through the engine. Runs are rows of
`training_runs`: on `start()` the runs a previous daemon left open are re-attached (engines
whose workers outlive the daemon, such as YARN), or whatever is left of them is ended and
they are queued again or failed, as `machine.recover` decides.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from p2pdata.catalog.encoding import decode, encode
from p2pdata.catalog.manifest import Manifest
from p2pdata.db import add_columns
from p2pdata.errors import CatalogError, JobSpecError, NotFound, TrainingError
from p2pdata.training import procs, worker
from p2pdata.training.engine import Attempt, Engine, EngineRegistry, Workers
from p2pdata.training.machine import Action, RunMachine, RunState, recover
from p2pdata.training.spec import JobSpec
from p2pdata.training.triggers import matching_jobs

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS training_runs (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    dataset TEXT NOT NULL,
    dataset_uri TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    exit_code INTEGER,
    exit_codes TEXT NOT NULL DEFAULT '{}',
    workers INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    run_dir TEXT NOT NULL,
    output_dir TEXT NOT NULL,
    processes TEXT NOT NULL DEFAULT '[]',
    spec TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS training_runs_by_state ON training_runs(state);
CREATE INDEX IF NOT EXISTS training_runs_by_job ON training_runs(job, created);
"""
# Columns added since the table first shipped: (name, declaration), added to older databases.
_ADDED_COLUMNS = (
    ("retries_left", "INTEGER"),  # NULL in rows of older daemons: the spec's retries
    ("manifest", "BLOB"),  # canonical encoding; kept only while the run may be re-queued
    ("engine", "TEXT NOT NULL DEFAULT 'local'"),
    ("engine_info", "TEXT NOT NULL DEFAULT '{}'"),  # see RunRecord.engine_info
    ("notes", "TEXT NOT NULL DEFAULT '[]'"),  # see RunRecord.notes
)
_RECORD_COLUMNS = (
    "id, job, dataset, dataset_uri, state, reason, exit_code, exit_codes, workers, attempt,"
    " created, started, finished, run_dir, output_dir, processes, spec, retries_left,"
    " engine, engine_info, notes"
)
_MAX_MANIFEST = 256 * 1024 * 1024


@dataclass
class RunRecord:
    """One run as stored; times are wall-clock seconds."""

    id: str
    job: str
    dataset: str  # NAME@VERSION
    dataset_uri: str
    state: RunState
    workers: int
    created: float
    run_dir: Path
    output_dir: Path
    spec: dict[str, Any]
    reason: str = ""
    exit_code: int | None = None
    exit_codes: dict[int, int] = field(default_factory=dict)  # per worker
    attempt: int = 0
    retries_left: int = 0  # retries the spec still allows this run
    started: float | None = None
    finished: float | None = None
    processes: list[procs.WorkerProcess] = field(default_factory=list)  # local engine
    engine: str = "local"
    # What the engine knows of the workers, shown with the run and used to re-find them:
    # "id" (YARN's application id), "state" (the engine's word for it), "url" (where the
    # engine shows it: YARN's tracking URL), and whatever else the engine keeps.
    engine_info: dict[str, Any] = field(default_factory=dict)
    # What the launcher's hooks did around the workers, e.g. "not cached: <why>".
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        """One line for tables: the engine and, if it has one, its id and state."""
        info = self.engine_info
        detail = " ".join(str(info[key]) for key in ("id", "state") if info.get(key))
        return f"{self.engine} {detail}".strip()

    @property
    def log_paths(self) -> list[Path]:
        return [self.run_dir / f"worker-{index}.log" for index in range(self.workers)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "job": self.job, "dataset": self.dataset,
            "dataset_uri": self.dataset_uri, "state": str(self.state), "reason": self.reason,
            "exit_code": self.exit_code,
            "exit_codes": {str(k): v for k, v in sorted(self.exit_codes.items())},
            "workers": self.workers, "attempt": self.attempt,
            "retries_left": self.retries_left, "created": self.created,
            "started": self.started, "finished": self.finished,
            "run_dir": str(self.run_dir), "output_dir": str(self.output_dir),
            "logs": [str(path) for path in self.log_paths],
            "pids": [p.pid for p in self.processes],
            "engine": self.engine, "engine_info": dict(self.engine_info), "where": self.where,
            "notes": list(self.notes),
        }

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        spec = json.loads(row["spec"])
        retries_left = row["retries_left"]
        return cls(
            id=row["id"], job=row["job"], dataset=row["dataset"],
            dataset_uri=row["dataset_uri"], state=RunState(row["state"]),
            workers=row["workers"], created=row["created"], run_dir=Path(row["run_dir"]),
            output_dir=Path(row["output_dir"]), spec=spec,
            reason=row["reason"], exit_code=row["exit_code"],
            exit_codes={int(k): v for k, v in json.loads(row["exit_codes"]).items()},
            attempt=row["attempt"],
            retries_left=spec.get("retries", 0) if retries_left is None else retries_left,
            started=row["started"], finished=row["finished"],
            processes=[procs.WorkerProcess.from_dict(p) for p in json.loads(row["processes"])],
            engine=row["engine"], engine_info=json.loads(row["engine_info"]),
            notes=json.loads(row["notes"]),
        )


class RunStore:
    """The training_runs table."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(_SCHEMA)
        add_columns(db, "training_runs", _ADDED_COLUMNS)

    def save(self, run: RunRecord) -> None:
        columns = _RECORD_COLUMNS.split(", ")
        # An upsert, not a replace: the manifest column is written on its own.
        self.db.execute(
            f"INSERT INTO training_runs ({_RECORD_COLUMNS}) VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT(id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in columns[1:])}",
            (run.id, run.job, run.dataset, run.dataset_uri, str(run.state), run.reason,
             run.exit_code, json.dumps({str(k): v for k, v in run.exit_codes.items()}),
             run.workers, run.attempt, run.created, run.started, run.finished,
             str(run.run_dir), str(run.output_dir),
             json.dumps([p.to_dict() for p in run.processes]), json.dumps(run.spec),
             run.retries_left, run.engine, json.dumps(run.engine_info, sort_keys=True),
             json.dumps(run.notes)),
        )
        if run.state.terminal:  # a finished run is never re-queued: drop its (large) manifest
            self.db.execute("UPDATE training_runs SET manifest = NULL WHERE id = ?", (run.id,))

    def keep_manifest(self, run_id: str, manifest: Manifest) -> None:
        """Keep the dataset's manifest with the run, to re-queue it after a restart."""
        self.db.execute("UPDATE training_runs SET manifest = ? WHERE id = ?",
                        (encode(manifest.to_dict()), run_id))

    def manifest(self, run_id: str) -> Manifest:
        row = self.db.execute("SELECT manifest FROM training_runs WHERE id = ?",
                              (run_id,)).fetchone()
        if row is None or row["manifest"] is None:
            raise NotFound(f"training run {run_id!r} has no manifest kept "
                           "(a finished run, or one recorded by an older daemon)")
        return Manifest.from_dict(decode(row["manifest"], max_size=_MAX_MANIFEST,
                                         what="a training run's manifest"))

    def get(self, run_id: str) -> RunRecord:
        row = self.db.execute(f"SELECT {_RECORD_COLUMNS} FROM training_runs WHERE id = ?",
                              (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no training run {run_id!r}")
        return RunRecord.from_row(row)

    def list(self, *, job: str | None = None, states: Iterable[RunState] | None = None,
             limit: int = 100) -> list[RunRecord]:
        sql, args = f"SELECT {_RECORD_COLUMNS} FROM training_runs WHERE 1=1", []
        if job is not None:
            sql += " AND job = ?"
            args.append(job)
        if states is not None:
            wanted = [str(state) for state in states]
            sql += f" AND state IN ({', '.join('?' * len(wanted))})"
            args.extend(wanted)
        sql += " ORDER BY created DESC, id DESC LIMIT ?"
        args.append(limit)
        return [RunRecord.from_row(row) for row in self.db.execute(sql, args)]


@dataclass
class _Active:
    record: RunRecord
    spec: JobSpec
    manifest: Manifest
    machine: RunMachine
    reattach: bool = False  # a run a previous daemon left running: find its workers again
    workers: Workers | None = None
    # While the engine starts (or re-finds) the workers the machine is not running yet:
    # a cancel arriving then is kept here and given to the machine once it is.
    starting: bool = False
    pending_cancel: str | None = None
    hooked: bool = False  # on_run_start was called: on_run_end is owed
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


StateCallback = Callable[[RunRecord], None]


class RunHooks(Protocol):
    """What the daemon does around a run's workers (such as caching its dataset):
    `on_run_start` before they start (or are found again after a restart), `on_run_end`
    once they are gone, whether for good or until a restart, and for a run a restart found
    over; not when they are left running (detached). Each returns a note for the run or
    None; neither may hold the run up for long, and the run goes on whatever they do."""

    async def on_run_start(self, run: RunRecord) -> str | None: ...

    async def on_run_end(self, run: RunRecord) -> str | None: ...


class Launcher:
    """Queues runs, runs at most `max_concurrent` at once, supervises their workers."""

    def __init__(
        self,
        db: sqlite3.Connection,
        runs_dir: Path,
        *,
        max_concurrent: int = 2,
        on_state_change: StateCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        poll_interval: float = 0.1,
        kill_grace: float = 5.0,
        port_retries: int = 3,
        engines: EngineRegistry | None = None,
        hooks: RunHooks | None = None,
    ) -> None:
        self.store = RunStore(db)
        self.runs_dir = Path(runs_dir)
        self.max_concurrent = max_concurrent
        self.on_state_change = on_state_change
        self.clock = clock  # deadlines and intervals
        self.wall = wall  # the times a run record shows (created, started, finished)
        self.poll_interval = poll_interval
        self.kill_grace = kill_grace
        self.port_retries = port_retries
        # Engines passed in belong to the caller, who closes them; made here, closed here.
        self._own_engines = engines is None
        self.engines = engines or EngineRegistry()
        self.hooks = hooks
        self._queue: deque[_Active] = deque()
        self._active: dict[str, _Active] = {}
        self._closed = False

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> list[RunRecord]:
        """Pick up the runs a previous daemon left queued or running: kill whatever workers
        it left behind, then queue each run again or fail it (`machine.recover` decides).

        Returns those runs, oldest first, in their new state.
        """
        left = self.store.list(states=(RunState.QUEUED, RunState.RUNNING), limit=1_000_000)
        for run in reversed(left):  # oldest first: the queue keeps its order
            was_running = run.state is RunState.RUNNING
            engine: Engine | None = None
            try:
                engine = self.engines.get(run.engine)
            except (JobSpecError, ImportError) as exc:
                missing = f"engine {run.engine!r} unavailable: {exc}"
            reattachable = (engine is not None and engine.detachable
                            and run.state is RunState.RUNNING and bool(run.engine_info))
            if engine is not None and not reattachable:
                try:
                    ended = await engine.abandon(run)
                except TrainingError as exc:  # the daemon starts anyway; the run says why
                    ended = []
                    log.warning("run %s: could not look for leftover workers: %s", run.id, exc)
                if ended:
                    log.warning("run %s: ended leftover workers %s", run.id, ended)
            fate = recover(run.state, reason=run.reason, retries_left=run.retries_left,
                           attempt=run.attempt, spawned=bool(run.processes or run.engine_info),
                           cause="daemon restarted", reattachable=reattachable)
            run.state, run.reason = fate.state, fate.reason
            run.retries_left, run.attempt = fate.retries_left, fate.attempt
            if not reattachable:
                if was_running:  # its workers are gone: undo what their start did
                    await self._hook(run, start=False)
                run.processes, run.exit_codes, run.engine_info = [], {}, {}
            if not run.state.terminal:
                try:
                    if engine is None:
                        raise TrainingError(missing)
                    self._queue.append(self._requeued(run, reattach=reattachable))
                except (JobSpecError, CatalogError, NotFound, TrainingError) as exc:
                    run.state, run.reason = RunState.FAILED, f"cannot re-queue after a daemon restart: {exc}"
            if run.state.terminal:
                run.finished = self.wall()
            log.info("run %s after the restart: %s (%s)", run.id, run.state, run.reason)
            self._save(run, notify=True)
        self._pump()
        return list(reversed(left))

    def _requeued(self, run: RunRecord, *, reattach: bool) -> _Active:
        spec = JobSpec.from_stored(run.spec)
        return _Active(run, spec, self.store.manifest(run.id), self._machine(spec, run),
                       reattach=reattach)

    def _machine(self, spec: JobSpec, run: RunRecord) -> RunMachine:
        return RunMachine(spec.workers, startup_timeout=spec.startup_timeout,
                          timeout=spec.timeout, retries=run.retries_left,
                          port_retries=self.port_retries, kill_grace=self.kill_grace,
                          attempt=run.attempt)

    async def close(self) -> None:
        """Stop for a daemon shutdown: queued runs stay queued; running ones end as
        `machine.recover` decides (waiting until their workers are gone), except those whose
        engine's workers outlive the daemon (YARN), which are left running; `start()` picks
        all of them up again."""
        self._closed = True
        while self._queue:
            self._queue.popleft().done.set()  # no longer waited for here
        for active in list(self._active.values()):
            engine = self.engines.get(active.record.engine)
            active.machine.interrupt("daemon stopped", detach=engine.detachable)
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._own_engines:
            await self.engines.close()

    # --- starting runs ------------------------------------------------------------------

    async def submit(self, spec: JobSpec, manifest: Manifest, dataset_uri: str) -> RunRecord:
        """Queue a run of `spec` on the dataset at `dataset_uri`; it starts when a slot is
        free. The record returned is live: the launcher keeps updating it."""
        if self._closed:
            raise TrainingError("the launcher is stopped")
        engine = self.engines.name_for(spec)  # an unknown engine is refused before queueing
        run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(self.wall()))}-{secrets.token_hex(3)}"
        run_dir = self.runs_dir / run_id
        output = spec.output_dir or str(run_dir / "output")
        output = output.format(run_id=run_id, job=spec.name, dataset=manifest.name,
                               version=manifest.version)
        record = RunRecord(
            id=run_id, job=spec.name, dataset=manifest.ref, dataset_uri=dataset_uri,
            state=RunState.QUEUED, workers=spec.workers, created=self.wall(),
            run_dir=run_dir, output_dir=Path(output), spec=spec.to_dict(),
            retries_left=spec.retries, engine=engine,
        )
        self._save(record, notify=True)
        self.store.keep_manifest(run_id, manifest)
        self._queue.append(_Active(record, spec, manifest, self._machine(spec, record)))
        self._pump()
        return record

    async def trigger(self, specs: Iterable[JobSpec], manifest: Manifest,
                      dataset_uri: str) -> list[RunRecord]:
        """A dataset landed at `dataset_uri`: submit every job whose trigger matches it."""
        return [await self.submit(spec, manifest, dataset_uri)
                for spec in matching_jobs(specs, manifest)]

    def _pump(self) -> None:
        while self._queue and len(self._active) < self.max_concurrent and not self._closed:
            active = self._queue.popleft()
            self._active[active.record.id] = active
            active.task = asyncio.create_task(self._supervise(active),
                                              name=f"training-run-{active.record.id}")

    # --- queries ------------------------------------------------------------------------

    def run(self, run_id: str) -> RunRecord:
        for active in (*self._active.values(), *self._queue):
            if active.record.id == run_id:
                return active.record
        return self.store.get(run_id)

    def runs(self, *, job: str | None = None, limit: int = 100) -> list[RunRecord]:
        return self.store.list(job=job, limit=limit)

    def logs(self, run_id: str) -> list[Path]:
        """The log file of each worker (all attempts appended, each after a header line)."""
        return self.run(run_id).log_paths

    async def wait(self, run_id: str, timeout: float | None = None) -> RunRecord:
        """The run's record once it is over."""
        for active in (*self._active.values(), *self._queue):
            if active.record.id == run_id:
                await asyncio.wait_for(active.done.wait(), timeout)
                break
        return self.run(run_id)

    async def follow(self, run_id: str, worker_index: int = 0) -> AsyncIterator[str]:
        """A worker's log as it is written, until the run is over."""
        path = self.logs(run_id)[worker_index]
        async for chunk in follow_file(path, lambda: self.run(run_id).state.terminal,
                                       self.poll_interval):
            yield chunk

    # --- cancel -------------------------------------------------------------------------

    async def cancel(self, run_id: str, reason: str = "cancelled") -> RunRecord:
        """Cancel a run: a queued one ends at once, a running one once its workers are gone."""
        for active in self._queue:
            if active.record.id == run_id:
                self._queue.remove(active)
                self._cancel_queued(active, reason)
                return active.record
        active = self._active.get(run_id)
        if active is not None:
            if active.starting:
                active.pending_cancel = active.pending_cancel or reason
            else:
                active.machine.cancel(reason)
            return active.record
        record = self.store.get(run_id)
        if not record.state.terminal:
            raise TrainingError(f"run {run_id} is not supervised by this launcher")
        return record

    def _cancel_queued(self, active: _Active, reason: str) -> None:
        active.machine.cancel(reason)
        active.record.state = RunState.CANCELLED
        active.record.reason = reason
        active.record.finished = self.wall()
        self._save(active.record, notify=True)
        active.done.set()

    # --- supervision --------------------------------------------------------------------

    async def _supervise(self, active: _Active) -> None:
        record, machine = active.record, active.machine
        engine = self.engines.get(record.engine)
        try:
            if machine.state is RunState.CANCELLED:  # cancelled before this task first ran
                self._cancel_queued(active, machine.reason)
                return
            if self._closed:  # the daemon stopped before this run began: it starts after the restart
                return
            active.starting = True
            active.hooked = True
            await self._hook(record, start=True)
            if active.reattach:
                active.workers = await engine.reattach(self._attempt(active))
                machine.resume(self.clock(), self.wall() - (record.started or self.wall()))
                log.info("run %s: re-attached to its %s workers %s", record.id, engine.name,
                         record.engine_info)
            else:
                record.run_dir.mkdir(parents=True, exist_ok=True)
                record.output_dir.mkdir(parents=True, exist_ok=True)
                (record.run_dir / "manifest.json").write_text(
                    worker.manifest_json(active.manifest.to_dict()))
                await self._launch(active, engine)
                machine.start(self.clock())
                record.state = RunState.RUNNING
                record.started = self.wall()
                self._save(record, notify=True)
            active.starting = False
            if active.pending_cancel is not None:
                machine.cancel(active.pending_cancel)
            if self._closed:  # the daemon began stopping while the workers were starting
                machine.interrupt("daemon stopped", detach=engine.detachable)
            while True:
                await self._observe(active)
                for action in machine.tick(self.clock()):
                    if action is Action.TERMINATE:
                        await active.workers.terminate()
                    elif action is Action.KILL:
                        await active.workers.kill()
                    elif action is Action.RELAUNCH:
                        log.info("run %s: %s; attempt %d", record.id, machine.reason,
                                 machine.attempt)
                        await self._release(active)
                        await self._launch(active, engine)
                    elif action is Action.DETACH:
                        await self._release(active, detach=True)
                        self._save(record, notify=False)
                        return
                    elif action is Action.FINISH:
                        await self._release(active)
                        active.hooked = False
                        await self._hook(record, start=False)
                        record.state = machine.state
                        record.reason = machine.reason
                        record.exit_code = machine.exit_code
                        record.retries_left = machine.retries_left
                        if record.state.terminal:  # not when queued again for after a restart
                            record.finished = self.wall()
                        self._save(record, notify=True)
                        return
                await asyncio.sleep(self.poll_interval)
        except BaseException as exc:
            # Whatever went wrong here, no worker may outlive its supervisor.
            await asyncio.shield(self._release(active, force=True))
            if active.hooked:
                await asyncio.shield(self._hook(record, start=False))
            cancelled = isinstance(exc, asyncio.CancelledError)
            record.state = RunState.CANCELLED if cancelled else RunState.FAILED
            record.reason = ("cancelled: the launcher stopped" if cancelled
                             else f"launcher error: {exc}")
            record.finished = self.wall()
            self._save(record, notify=True)
            if cancelled or not isinstance(exc, Exception):
                raise
            log.exception("run %s failed in the launcher", record.id)
        finally:
            self._active.pop(record.id, None)
            active.done.set()
            self._pump()

    def _attempt(self, active: _Active) -> Attempt:
        return Attempt(record=active.record, spec=active.spec, number=active.machine.attempt,
                       env=self._env(active), save=lambda: self._save(active.record,
                                                                      notify=False))

    async def _launch(self, active: _Active, engine: Engine) -> None:
        record = active.record
        record.exit_codes, record.processes, record.engine_info = {}, [], {}
        record.attempt = active.machine.attempt
        record.retries_left = active.machine.retries_left
        active.workers = await engine.launch(self._attempt(active))
        self._save(record, notify=False)

    async def _release(self, active: _Active, *, detach: bool = False,
                       force: bool = False) -> None:
        workers, active.workers = active.workers, None
        if workers is None:
            return
        if force:
            with contextlib.suppress(Exception):
                await workers.kill()
        await workers.release(detach=detach)

    def _env(self, active: _Active) -> dict[str, str]:
        """What every worker of the run sees, whatever the engine (see `worker`)."""
        record, spec = active.record, active.spec
        env = {"PYTHONUNBUFFERED": "1", "TF_ENABLE_ONEDNN_OPTS": "0", **spec.env}
        manifest = active.manifest.to_dict()
        if "torrent" in manifest:
            # The torrent bytes can exceed the kernel's limit for one variable (128 KiB).
            manifest["torrent"] = {"info_hash": manifest["torrent"]["info_hash"]}
        env.update({
            worker.DATASET_URI: record.dataset_uri,
            worker.DATASET: record.dataset,
            worker.MANIFEST: worker.manifest_json(manifest),
            worker.MANIFEST_FILE: str(record.run_dir / "manifest.json"),
            worker.OUTPUT_DIR: str(record.output_dir),
            worker.RUN_ID: record.id,
            worker.JOB: record.job,
            worker.ATTEMPT: str(active.machine.attempt),
        })
        return env

    async def _observe(self, active: _Active) -> None:
        machine, record, workers = active.machine, active.record, active.workers
        assert workers is not None
        info = dict(record.engine_info)
        seen = await workers.observe()
        await workers.fetch_logs()
        for index in seen.ready:
            machine.ready(index)
        for index, code in seen.exited.items():
            if index not in machine.exit_codes:
                machine.exited(index, code, bind_failed=index in seen.bind_failed)
                record.exit_codes[index] = code
        if seen.failure is not None:
            machine.engine_failed(seen.failure)
        if seen.over:
            machine.gone()
        if record.engine_info != info:
            self._save(record, notify=False)

    async def _hook(self, record: RunRecord, *, start: bool) -> None:
        """Call a hook; keep its note with the run. A failing hook fails no run."""
        if self.hooks is None:
            return
        hook = self.hooks.on_run_start if start else self.hooks.on_run_end
        try:
            note = await hook(record)
        except Exception:
            log.exception("%s failed for run %s", hook.__name__, record.id)
            note = f"{hook.__name__} failed (see the daemon's log)"
        if note:
            if note in record.notes:  # a note repeated by a retry moves to the end: one each
                record.notes.remove(note)
            record.notes.append(note)
            self._save(record, notify=False)

    def _save(self, record: RunRecord, *, notify: bool) -> None:
        self.store.save(record)
        if notify and self.on_state_change is not None:
            try:
                self.on_state_change(record)
            except Exception:
                log.exception("on_state_change callback failed for run %s", record.id)


class LogTail:
    """Reads what was appended to a log file since the last call, as text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._position = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def read(self, final: bool = False) -> str:
        data = b""
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as handle:
            handle.seek(self._position)
            data = handle.read()
            self._position += len(data)
        return self._decoder.decode(data, final=final)


async def follow_file(path: Path, done: Callable[[], bool],
                      poll_interval: float = 0.2) -> AsyncIterator[str]:
    """Yield text appended to `path` until `done()` is true and everything is read."""
    tail = LogTail(path)
    while True:
        finished = done()  # asked before reading, so nothing written before the end is lost
        text = tail.read(final=finished)
        if text:
            yield text
        if finished:
            return
        await asyncio.sleep(poll_interval)


def follow_logs(paths: list[Path], *, follow: bool = False, poll_interval: float = 0.5,
                done: Callable[[], bool] | None = None) -> Iterator[str]:
    """Lines of the workers' logs, each prefixed with `[worker N]` when there are several.

    Without `follow`, what is there now; with it, keep waiting for more (like `tail -f`)
    until `done()` is true, or forever without `done`.
    """
    tails = [LogTail(path) for path in paths]
    pending = [""] * len(paths)
    while True:
        finished = not follow or (done is not None and done())
        for index, tail in enumerate(tails):
            pending[index] += tail.read(final=finished)
            *lines, pending[index] = pending[index].split("\n")
            if finished and pending[index]:
                lines.append(pending[index])
                pending[index] = ""
            prefix = f"[worker {index}] " if len(paths) > 1 else ""
            for line in lines:
                yield f"{prefix}{line}\n"
        if finished:
            return
        time.sleep(poll_interval)
