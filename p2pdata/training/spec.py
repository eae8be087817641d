"""Training job specs: TOML files that say what to run when which dataset lands."""

from __future__ import annotations

import json
import logging
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pdata.errors import JobSpecError, NotFound

log = logging.getLogger(__name__)

FRAMEWORKS = ("tensorflow", "torch", "none")
JOB_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENGINE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_MEMORY = re.compile(r"\s*(\d+)\s*([kmgt]i?b?|b)?\s*", re.IGNORECASE)
_MIB_PER_UNIT = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
# Frameworks whose workers block on each other at start-up get a deadline by default;
# `none` scripts usually know nothing of the ready marker, so theirs is off unless asked for.
DEFAULT_STARTUP_TIMEOUT = {"tensorflow": 600.0, "torch": 600.0, "none": None}

_TOP_KEYS = {
    "name", "description", "trigger", "entry", "workers", "framework", "env", "timeout",
    "startup_timeout", "retries", "workdir", "output_dir", "python", "base_dir", "engine",
    "resources",
}
_RESOURCE_KEYS = {"memory", "vcores", "gpus"}
_TRIGGER_KEYS = {"dataset", "publisher", "tag"}
_ENTRY_KEYS = {"module", "script", "args"}


@dataclass(frozen=True)
class Trigger:
    """Which landed datasets start the job: a name glob, optionally one publisher and tags."""

    dataset: str
    publisher: str | None = None
    tags: tuple[str, ...] = ()  # all must be on the dataset

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "publisher": self.publisher, "tags": list(self.tags)}


@dataclass(frozen=True)
class Entry:
    """What each worker runs: `python -m module ARGS` or `python script ARGS`."""

    module: str | None
    script: Path | None
    args: tuple[str, ...] = ()

    def argv(self, python: str) -> list[str]:
        target = ["-m", self.module] if self.module else [str(self.script)]
        return [python, *target, *self.args]

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "script": None if self.script is None else str(self.script),
            "args": list(self.args),
        }


@dataclass(frozen=True)
class Resources:
    """What each worker needs. Engines that schedule (YARN) ask for exactly this; the local
    engine runs on the daemon's machine as it is and ignores it."""

    memory: int | None = None  # MiB; None: the engine's default
    vcores: int | None = None
    gpus: int = 0  # YARN: the `yarn.io/gpu` resource type

    def to_dict(self) -> dict[str, Any]:
        return {"memory": self.memory, "vcores": self.vcores, "gpus": self.gpus}


@dataclass(frozen=True)
class JobSpec:
    name: str
    entry: Entry
    trigger: Trigger | None = None  # None: only started by hand
    workers: int = 1
    framework: str = "none"
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds for the whole run, retries included
    startup_timeout: float | None = None  # seconds until every worker is ready
    retries: int = 0  # extra attempts after a failure (not after cancel or timeout)
    workdir: Path | None = None  # None: the run's own directory
    output_dir: str | None = None  # may hold {run_id}, {job}, {dataset}, {version}
    python: str | None = None  # None: the daemon's interpreter
    engine: str | None = None  # "local", "yarn", ...; None: the daemon's training.default_engine
    resources: Resources = field(default_factory=Resources)
    description: str = ""
    source: Path | None = None  # the file it was loaded from

    @classmethod
    def load(cls, path: Path) -> JobSpec:
        """Read and validate a spec file; JobSpecError names the file and the field."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise JobSpecError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise JobSpecError(f"{path}: not valid TOML: {exc}") from exc
        return cls.from_dict(data, source=path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Path | None = None) -> JobSpec:
        where = str(source) if source else "job spec"
        _unknown(data, _TOP_KEYS, where, "")
        name = _get(data, "name", str, where)
        if not JOB_NAME.fullmatch(name):
            raise JobSpecError(f"{where}: name: {name!r} must match [a-z0-9][a-z0-9._-]*")
        base = Path(_get(data, "base_dir", str, where, default="") or
                    (source.parent if source else Path.cwd())).absolute()

        framework = _get(data, "framework", str, where, default="none")
        if framework not in FRAMEWORKS:
            raise JobSpecError(f"{where}: framework: expected one of {FRAMEWORKS}, "
                               f"got {framework!r}")
        workers = _get(data, "workers", int, where, default=1)
        if not 1 <= workers <= 256:
            raise JobSpecError(f"{where}: workers: must be between 1 and 256, got {workers}")
        retries = _get(data, "retries", int, where, default=0)
        if not 0 <= retries <= 100:
            raise JobSpecError(f"{where}: retries: must be between 0 and 100, got {retries}")

        env = _get(data, "env", dict, where, default={})
        for key, value in env.items():
            if not ENV_NAME.fullmatch(key):
                raise JobSpecError(f"{where}: env.{key}: not a valid variable name")
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise JobSpecError(f"{where}: env.{key}: expected a string or number")

        startup = _seconds(data, "startup_timeout", where, DEFAULT_STARTUP_TIMEOUT[framework])
        workdir = _get(data, "workdir", str, where, default=None)
        python = _get(data, "python", str, where, default=None)
        return cls(
            name=name,
            description=_get(data, "description", str, where, default=""),
            trigger=_trigger(data, where),
            entry=_entry(data, where, base),
            workers=workers,
            framework=framework,
            env={key: str(value) for key, value in env.items()},
            timeout=_seconds(data, "timeout", where, None),
            startup_timeout=startup,
            retries=retries,
            workdir=None if workdir is None else base / workdir,
            output_dir=_output_dir(data, where, base),
            python=python,
            engine=_engine(data, where),
            resources=_resources(data, where),
            source=source,
        )

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> JobSpec:
        """The spec again from its `to_dict()` (kept with each run), validated as a file is.

        Paths in it are already absolute, so no base directory changes their meaning.
        """
        raw = {k: v for k, v in data.items() if k not in ("source", "trigger") and v is not None}
        raw["entry"] = {k: v for k, v in data.get("entry", {}).items() if v is not None}
        raw["resources"] = {k: v for k, v in data.get("resources", {}).items() if v is not None}
        trigger = data.get("trigger")
        if trigger is not None:
            raw["trigger"] = {"dataset": trigger.get("dataset"), "tag": trigger.get("tags", [])}
            if trigger.get("publisher") is not None:
                raw["trigger"]["publisher"] = trigger["publisher"]
        source = data.get("source")
        return cls.from_dict(raw, source=Path(source) if source else None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "trigger": None if self.trigger is None else self.trigger.to_dict(),
            "entry": self.entry.to_dict(),
            "workers": self.workers,
            "framework": self.framework,
            "env": dict(self.env),
            "timeout": self.timeout,
            "startup_timeout": self.startup_timeout,
            "retries": self.retries,
            "workdir": None if self.workdir is None else str(self.workdir),
            "output_dir": self.output_dir,
            "python": self.python,
            "engine": self.engine,
            "resources": self.resources.to_dict(),
            "source": None if self.source is None else str(self.source),
        }


def _get(data: dict[str, Any], key: str, kind: type, where: str, **default: Any) -> Any:
    if key not in data:
        if "default" in default:
            return default["default"]
        raise JobSpecError(f"{where}: {key}: missing")
    value = data[key]
    # bool is an int in Python, but `workers = true` is a mistake
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise JobSpecError(f"{where}: {key}: expected {_kind_name(kind)}, "
                           f"got {type(value).__name__} {value!r}")
    return value


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", dict: "a table", list: "a list"}.get(
        kind, kind.__name__)


def _unknown(data: dict[str, Any], known: set[str], where: str, prefix: str) -> None:
    for key in data:
        if key not in known:
            raise JobSpecError(f"{where}: {prefix}{key}: unknown field "
                               f"(known: {', '.join(sorted(known))})")


def _seconds(data: dict[str, Any], key: str, where: str, default: float | None) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise JobSpecError(f"{where}: {key}: expected a positive number of seconds, "
                           f"got {value!r}")
    return float(value)


def _engine(data: dict[str, Any], where: str) -> str | None:
    name = _get(data, "engine", str, where, default=None)
    if name is not None and not ENGINE_NAME.fullmatch(name):
        raise JobSpecError(f"{where}: engine: {name!r} is not an engine name "
                           "(such as \"local\" or \"yarn\")")
    return name


def _resources(data: dict[str, Any], where: str) -> Resources:
    table = _get(data, "resources", dict, where, default={})
    _unknown(table, _RESOURCE_KEYS, where, "resources.")
    memory = table.get("memory")
    if memory is not None:
        memory = _mebibytes(memory, f"{where}: resources.memory")
    counts: dict[str, int | None] = {}
    for key, least in (("vcores", 1), ("gpus", 0)):
        value = _get(table, key, int, f"{where}: resources", default=None)
        if value is not None and not least <= value <= 4096:
            raise JobSpecError(f"{where}: resources.{key}: must be between {least} and 4096, "
                               f"got {value}")
        counts[key] = value
    return Resources(memory=memory, vcores=counts["vcores"], gpus=counts["gpus"] or 0)


def _mebibytes(value: Any, where: str) -> int:
    """Memory as MiB: a whole number is MiB already; a string may carry a unit (k, m, g, t,
    with or without "iB"/"B"; binary units either way, as YARN counts)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mib = value
    elif isinstance(value, str) and (match := _MEMORY.fullmatch(value)):
        unit = (match.group(2) or "m")[0].lower()
        mib = int(int(match.group(1)) * _MIB_PER_UNIT.get(unit, 1 / 1024 / 1024))
    else:
        raise JobSpecError(f"{where}: expected MiB as a whole number or a size such as "
                           f"\"2g\" or \"512 MiB\", got {value!r}")
    if not 1 <= mib <= 1024 * 1024 * 1024:
        raise JobSpecError(f"{where}: must be at least 1 MiB, got {value!r}")
    return mib


def _trigger(data: dict[str, Any], where: str) -> Trigger | None:
    if "trigger" not in data:
        return None
    table = _get(data, "trigger", dict, where)
    _unknown(table, _TRIGGER_KEYS, where, "trigger.")
    dataset = _get(table, "dataset", str, f"{where}: trigger")
    publisher = _get(table, "publisher", str, f"{where}: trigger", default=None)
    tag = table.get("tag", [])
    tags = [tag] if isinstance(tag, str) else tag
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise JobSpecError(f"{where}: trigger.tag: expected a string or a list of strings")
    if not dataset:
        raise JobSpecError(f"{where}: trigger.dataset: must not be empty (use '*' for any)")
    return Trigger(dataset, publisher, tuple(tags))


def _entry(data: dict[str, Any], where: str, base: Path) -> Entry:
    table = _get(data, "entry", dict, where)
    _unknown(table, _ENTRY_KEYS, where, "entry.")
    module = _get(table, "module", str, f"{where}: entry", default=None)
    script = _get(table, "script", str, f"{where}: entry", default=None)
    if (module is None) == (script is None):
        raise JobSpecError(f"{where}: entry: give exactly one of entry.module or entry.script")
    args = _get(table, "args", list, f"{where}: entry", default=[])
    if not all(isinstance(arg, str) for arg in args):
        raise JobSpecError(f"{where}: entry.args: expected a list of strings")
    if module is not None and not re.fullmatch(r"[A-Za-z_][\w.]*", module):
        raise JobSpecError(f"{where}: entry.module: {module!r} is not a module name")
    return Entry(module, None if script is None else base / script, tuple(args))


def _output_dir(data: dict[str, Any], where: str, base: Path) -> str | None:
    value = _get(data, "output_dir", str, where, default=None)
    if value is None:
        return None
    try:
        value.format(run_id="", job="", dataset="", version="")
    except (KeyError, IndexError, ValueError) as exc:
        raise JobSpecError(f"{where}: output_dir: bad placeholder {exc} (known: {{run_id}}, "
                           "{job}, {dataset}, {version})") from exc
    return str(base / value)


class JobRegistry:
    """The jobs directory: one validated `<name>.toml` per job."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def add(self, path: Path, *, replace: bool = False) -> JobSpec:
        """Validate a spec file and copy it in; relative paths keep meaning what they meant."""
        path = Path(path).absolute()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise JobSpecError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        return self.add_text(text, str(path), base_dir=path.parent, replace=replace)

    def add_text(self, text: str, filename: str = "job.toml", *, base_dir: Path | None = None,
                 replace: bool = False) -> JobSpec:
        """Validate spec text (named `filename` in errors) and store it as `<name>.toml`.

        Relative paths in it are resolved against `base_dir` (default: the jobs directory)
        unless the spec sets `base_dir` itself.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise JobSpecError(f"{filename}: not valid TOML: {exc}") from exc
        base = Path(base_dir or self.directory).absolute()
        if "base_dir" not in data:
            # Top-level keys must come before any table, so prepending is always valid TOML;
            # a JSON string is a valid TOML basic string.
            text = f"base_dir = {json.dumps(str(base))}\n{text}"
            data["base_dir"] = str(base)
        spec = JobSpec.from_dict(data, source=Path(filename))
        target = self.directory / f"{spec.name}.toml"
        if target.exists() and not replace:
            raise JobSpecError(f"{filename}: name: a job called {spec.name!r} already exists "
                               f"({target}); remove it first or replace it")
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".toml.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        return JobSpec.load(target)

    def remove(self, name: str) -> None:
        target = self.directory / f"{name}.toml"
        if not target.exists():
            raise NotFound(f"no job called {name!r} in {self.directory}")
        target.unlink()

    def get(self, name: str) -> JobSpec:
        for spec in self.specs():
            if spec.name == name:
                return spec
        raise NotFound(f"no job called {name!r} in {self.directory}")

    def specs(self) -> list[JobSpec]:
        """Every valid spec, sorted by name; invalid files are logged and skipped."""
        specs, problems = self.scan()
        for problem in problems:
            log.warning("skipping job spec: %s", problem)
        return specs

    def scan(self) -> tuple[list[JobSpec], list[JobSpecError]]:
        """Every valid spec and every problem, so a status page can show both."""
        specs: dict[str, JobSpec] = {}
        problems: list[JobSpecError] = []
        if not self.directory.is_dir():
            return [], []
        for path in sorted(self.directory.glob("*.toml")):
            try:
                spec = JobSpec.load(path)
            except JobSpecError as exc:
                problems.append(exc)
                continue
            if spec.name in specs:
                problems.append(JobSpecError(
                    f"{path}: name: {spec.name!r} is also used by {specs[spec.name].source}"))
                continue
            specs[spec.name] = spec
        return sorted(specs.values(), key=lambda s: s.name), problems

