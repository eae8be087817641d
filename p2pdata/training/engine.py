"""The engine seam: what the launcher asks of whatever runs a run's workers.

`RunMachine` decides; an engine only acts. The launcher hands an engine one `Attempt` (the
workers' common environment, their log files, the spec) and gets back `Workers`, which it
then watches (`observe`, `fetch_logs`) and stops (`terminate`, `kill`) as the machine says.

Engines are looked up by name (`ENGINES`: name → "module:Class"), so adding one is a new
class plus its entry there and, if it needs any, a config section; the launcher has no
branch per engine. A class is imported only when a run first uses it, so the daemon never
imports Skein or Ray unless a job asks for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from p2pdata.errors import ConfigError, JobSpecError
from p2pdata.training.spec import JobSpec

if TYPE_CHECKING:  # the record type is the launcher's; engines only read and annotate it
    from p2pdata.training.launcher import RunRecord

ENGINES: dict[str, str] = {
    "local": "p2pdata.training.local:LocalEngine",
    "yarn": "p2pdata.training.yarn:YarnEngine",
}


@dataclass(frozen=True)
class Attempt:
    """One attempt of a run: everything an engine needs to start its workers."""

    # Live: an engine fills in `processes` (local) or `engine_info` ({"id", "state", "url"}
    # of what it started, e.g. a YARN application), and the launcher saves it.
    record: RunRecord
    spec: JobSpec
    number: int
    env: dict[str, str]  # the same for every worker: the spec's env and the P2PDATA_* contract
    save: Callable[[], None]  # store the record now: call after anything that must survive a crash

    @property
    def workers(self) -> int:
        return self.spec.workers

    @property
    def log_paths(self) -> list[Path]:
        return self.record.log_paths

    @property
    def run_dir(self) -> Path:
        return self.record.run_dir


@dataclass
class Observation:
    """What an engine saw of an attempt's workers since it started (cumulative)."""

    ready: set[int] = field(default_factory=set)
    exited: dict[int, int] = field(default_factory=dict)  # index → exit code (<0: signal)
    bind_failed: set[int] = field(default_factory=set)  # exited because a port was taken
    failure: str | None = None  # the attempt cannot go on, in the engine's words (YARN's reason)
    over: bool = False  # no worker of the attempt is left (its YARN application ended)


class Workers(Protocol):
    """One attempt's workers, as an engine runs them."""

    async def observe(self) -> Observation:
        """Which workers are ready, which exited and how; never blocks for long."""
        ...

    async def fetch_logs(self) -> None:
        """Bring new worker output into the run's log files (a no-op where workers write
        there themselves)."""
        ...

    async def terminate(self) -> None:
        """Ask every worker to stop (SIGTERM, or kill the YARN application)."""
        ...

    async def kill(self) -> None:
        """Stop every worker now: the grace period is over."""
        ...

    async def release(self, *, detach: bool = False) -> None:
        """The attempt is over for the launcher: clean up (reap, last logs). With `detach`
        the daemon is stopping and the workers run on, to be re-found by `reattach`."""
        ...


class Engine(Protocol):
    """Starts and re-finds the workers of runs."""

    name: str
    # True when workers outlive the daemon (a YARN application): a daemon stop leaves them
    # running and the next start re-attaches; False for child processes, which die with it.
    detachable: bool

    async def launch(self, attempt: Attempt) -> Workers:
        """Start the attempt's workers; raises TrainingError when they cannot be started."""
        ...

    async def reattach(self, attempt: Attempt) -> Workers:
        """Find the workers a previous daemon started for `attempt.record` (detachable
        engines only); an Observation with `failure` says when they are gone."""
        ...

    async def abandon(self, record: RunRecord) -> list[str]:
        """End whatever is left of a run a previous daemon started and that will not be
        re-attached; returns what was ended, for the log."""
        ...

    async def close(self) -> None: ...


class EngineFactory(Protocol):
    def __call__(self, settings: Mapping[str, Any]) -> Engine: ...


class EngineRegistry:
    """The engines a daemon can use, made on first use from their settings.

    `settings` maps an engine's name to its config (e.g. the `[yarn]` section as a dict);
    `default` is the engine of specs that name none.
    """

    def __init__(self, settings: Mapping[str, Mapping[str, Any]] | None = None, *,
                 default: str = "local", classes: Mapping[str, str] | None = None) -> None:
        self.classes = dict(ENGINES if classes is None else classes)
        self.settings = dict(settings or {})
        if default not in self.classes:
            raise ConfigError(f"training.default_engine: {default!r} is not an engine "
                              f"(known: {', '.join(sorted(self.classes))})")
        self.default = default
        self._made: dict[str, Engine] = {}

    def name_for(self, spec: JobSpec) -> str:
        name = spec.engine or self.default
        if name not in self.classes:
            raise JobSpecError(f"job {spec.name}: engine: {name!r} is not an engine of this "
                               f"daemon (known: {', '.join(sorted(self.classes))})")
        return name

    def get(self, name: str) -> Engine:
        engine = self._made.get(name)
        if engine is None:
            if name not in self.classes:
                raise JobSpecError(f"engine: {name!r} is not an engine of this daemon "
                                   f"(known: {', '.join(sorted(self.classes))})")
            module, _, attr = self.classes[name].partition(":")
            factory: EngineFactory = getattr(importlib.import_module(module), attr)
            engine = self._made[name] = factory(self.settings.get(name, {}))
        return engine

    def add(self, engine: Engine) -> None:
        """Use a ready-made engine under its name (tests; engines built elsewhere)."""
        self.classes.setdefault(engine.name, f"{type(engine).__module__}:{type(engine).__name__}")
        self._made[engine.name] = engine

    async def close(self) -> None:
        for engine in self._made.values():
            await engine.close()
        self._made.clear()
