"""The `yarn` engine: one YARN application per run attempt, one container per worker, via Skein.

Why Skein and not YARN's services REST API: Skein is a maintained Python library with its own
small application master, and that master carries a key-value store, which is exactly the
rendezvous the workers need (each container publishes the host:port it will serve on and
waits, with a deadline, for all the others). The services API needs its framework jars
uploaded to HDFS per cluster (or on every submission), and has no rendezvous: the daemon
would have to be reachable from every node to play that role. Both fail fast with YARN's
own reasons; Skein also reports each container's state and exit status.

What runs where:
- The daemon holds one Skein driver (a JVM that speaks YARN's client protocol) per engine,
  started on first use, with credentials kept in the engine's state directory so that a
  restarted daemon can talk to the application masters of the runs it re-attaches to.
- Each container runs `python -m p2pdata.training.yarn_worker` (see there): rendezvous,
  TF_CONFIG / torch variables, the job's script as a child, readiness into the key-value
  store. The Python and p2pdata reach the nodes as YARN users do: a path every node has
  (`[yarn] python`; one machine: the daemon's own environment).
- Worker output is read back from the NodeManagers' web services into the run's log files.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shlex
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import p2pdata
from p2pdata.errors import TrainingError
from p2pdata.training import procs, worker
from p2pdata.training.engine import Attempt, Observation
from p2pdata.training.worker import ENV_BLOB, EXIT_PREFIX, READY_PREFIX

if TYPE_CHECKING:
    import skein

    from p2pdata.training.launcher import RunRecord

SERVICE = "worker"
_FAILED = re.compile(r"worker (\d+) exited with code (-?\d+)")  # see worker.failed
LIVE_STATES = ("NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING")
_ALL_CONTAINER_STATES = ("WAITING", "REQUESTED", "RUNNING", "SUCCEEDED", "FAILED", "KILLED")
_EXIT_CODE = re.compile(r"[Ee]xit (?:code|status)(?: is)?:?\s*(-?\d+)")
_LOG_CHUNK = 1024 * 1024  # bytes asked of a NodeManager per poll once a log is being followed
_HTTP_TIMEOUT = 10.0
PACKAGE_ROOT = str(Path(p2pdata.__file__).resolve().parents[1])

log = logging.getLogger(__name__)


def run_tag(run_id: str) -> str:
    """The YARN application tag of a run (YARN lower-cases tags)."""
    return f"p2pdata-run-{run_id}".lower()


def exit_code(state: str, message: str) -> int:
    """A container's exit code from Skein's state and YARN's diagnostics."""
    match = _EXIT_CODE.search(message or "")
    if match:
        return int(match.group(1))
    return {"SUCCEEDED": 0, "KILLED": -15}.get(state, 1)


class YarnEngine:
    name = "yarn"
    detachable = True  # an application runs on without the daemon; found again by its id

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        settings = dict(settings or {})
        self.queue: str = settings.get("queue") or "default"
        self.user: str = settings.get("user") or ""
        self.python: str = settings.get("python") or sys.executable
        self.master_memory = int(settings.get("master_memory") or 256)
        self.worker_memory = int(settings.get("worker_memory") or 1024)
        self.worker_vcores = int(settings.get("worker_vcores") or 1)
        self.resourcemanager: str = settings.get("resourcemanager") or ""
        self.conf_dir: str = (settings.get("hadoop_conf_dir")
                              or os.environ.get("HADOOP_CONF_DIR", ""))
        self.classpath: str = settings.get("classpath") or ""
        self.state_dir = Path(settings.get("state_dir") or Path.home() / ".p2pdata-yarn")
        # How often to ask YARN about a run and to copy its logs: the launcher polls faster
        # than a ResourceManager should be asked.
        self.poll_interval = float(settings.get("poll_interval") or 0.5)
        self.log_interval = float(settings.get("log_interval") or 1.0)
        self.rpc_timeout = float(settings.get("rpc_timeout") or 120.0)
        self._client: skein.Client | None = None
        self._lock = threading.Lock()

    # --- the Skein driver -----------------------------------------------------------------

    def client(self) -> skein.Client:
        """The Skein client, its driver started on first use (blocking: call in a thread)."""
        with self._lock:
            if self._client is None:
                self._client = self._start_client()
            return self._client

    def _start_client(self) -> skein.Client:
        try:
            import skein
        except ImportError as exc:
            raise TrainingError("the yarn engine needs Skein: pip install 'p2pdata[yarn]'"
                                ) from exc
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf_dir = self._client_conf_dir()
        env = {"HADOOP_CONF_DIR": conf_dir}
        if self.user:
            env["HADOOP_USER_NAME"] = self.user  # simple auth: act as that user
        if self.classpath:
            # Skein asks `yarn classpath --glob` for the Hadoop jars; without a Hadoop install
            # on this machine a stand-in answers with the configured classpath.
            bin_dir = self.state_dir / "bin"
            bin_dir.mkdir(exist_ok=True)
            shim = bin_dir / "yarn"
            shim.write_text(f"#!/bin/sh\necho {shlex.quote(conf_dir + ':' + self.classpath)}\n")
            shim.chmod(0o700)
            env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        with _environ(env):  # Skein's driver takes its settings from the environment
            try:
                return skein.Client(security=self._security(skein),
                                    log=str(self.state_dir / "skein-driver.log"),
                                    java_options=["-Xmx256m", "-XX:+UseSerialGC"])
            except Exception as exc:
                raise TrainingError(f"cannot start the Skein driver for YARN: {exc} "
                                    f"(see {self.state_dir / 'skein-driver.log'})") from exc

    def _security(self, skein: Any) -> skein.Security:
        """Credentials kept across daemon restarts: application masters only talk to clients
        holding the certificate they were started with."""
        cert, key = self.state_dir / "skein.crt", self.state_dir / "skein.pem"
        if not (cert.exists() and key.exists()):
            fresh = skein.Security.new_credentials()
            for path, data in ((cert, fresh.cert_bytes), (key, fresh.key_bytes)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
        return skein.Security(cert_file=str(cert), key_file=str(key))

    def _client_conf_dir(self) -> str:
        """HADOOP_CONF_DIR for the driver: the configured one, with `resourcemanager`
        written over yarn.resourcemanager.address when it is set."""
        if not self.resourcemanager:
            if not self.conf_dir:
                raise TrainingError("the yarn engine needs [yarn] resourcemanager or "
                                    "hadoop_conf_dir (or HADOOP_CONF_DIR) in the daemon config")
            return self.conf_dir
        target = self.state_dir / "conf"
        target.mkdir(exist_ok=True)
        if self.conf_dir:
            for source in Path(self.conf_dir).glob("*.xml"):
                (target / source.name).write_bytes(source.read_bytes())
        _set_property(target / "yarn-site.xml", "yarn.resourcemanager.address",
                      self.resourcemanager)
        return str(target)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`method` of the YARN client, bounded as `blocking` is (for the engine's runs)."""
        def call() -> Any:
            return getattr(self.client(), method)(*args, **kwargs)
        return await self.blocking(call)

    async def blocking(self, function: Any, *args: Any) -> Any:
        """Run a blocking Skein/YARN call in a thread, for at most `rpc_timeout` seconds: a
        YARN client retries an unreachable ResourceManager for many minutes, and the run
        must not wait that long (the thread is left to finish on its own)."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(function, *args), self.rpc_timeout)
        except TimeoutError as exc:
            where = self.resourcemanager or f"the one in {self.conf_dir}"
            raise TrainingError(f"YARN did not answer within {self.rpc_timeout:g}s: is the "
                                f"ResourceManager ({where}) up?") from exc

    # --- the Engine protocol --------------------------------------------------------------

    async def launch(self, attempt: Attempt) -> YarnWorkers:
        client = await self.blocking(self.client)  # says so when Skein is missing
        import skein

        spec = self._application(attempt, skein)
        workers = YarnWorkers(self, attempt)
        try:
            app_id = await self.blocking(client.submit, spec)
        except (skein.exceptions.DriverError, ValueError) as exc:
            # YARN refused it outright (unknown queue, a resource type it does not have, ...)
            workers.refused = f"YARN refused the application: {_first_lines(str(exc))}"
            return workers
        except TrainingError:
            # No answer in time: should the submission still go through, kill what it made.
            with contextlib.suppress(TrainingError):
                await self.abandon(attempt.record)
            raise
        attempt.record.engine_info = {"id": app_id, "state": "SUBMITTED", "url": "",
                                      "queue": self.queue}
        attempt.save()  # the id first: a crash from here on must not lose the application
        workers.app_id = app_id
        return workers

    def _application(self, attempt: Attempt, skein: Any) -> skein.ApplicationSpec:
        spec, record = attempt.spec, attempt.record
        env = dict(attempt.env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (env.get("PYTHONPATH", ""), PACKAGE_ROOT) if p)
        env.update({
            worker.NUM_WORKERS: str(spec.workers),
            "P2PDATA_ARGV": json.dumps(spec.entry.argv(spec.python or self.python)),
            "P2PDATA_FRAMEWORK": spec.framework,
            "P2PDATA_RENDEZVOUS_TIMEOUT": str(spec.startup_timeout or 600),
        })
        if spec.workdir is not None:
            env["P2PDATA_WORKDIR"] = str(spec.workdir)
        # YARN writes each variable into the container's launch script as export K="V"
        # without escaping, so JSON values (the manifest, argv) would not survive: they
        # travel as one base64 blob that the container's bootstrap unpacks.
        container_env = {"PYTHONPATH": env["PYTHONPATH"],
                         ENV_BLOB: base64.b64encode(json.dumps(env).encode()).decode()}
        resources = spec.resources
        script = f"exec {shlex.quote(self.python)} -m p2pdata.training.yarn_worker 2>&1"
        return skein.ApplicationSpec(
            name=f"p2pdata {record.job} {record.id}",
            queue=self.queue,
            tags=["p2pdata", run_tag(record.id)],
            max_attempts=1,  # a second application master would start the workers twice
            master=skein.Master(resources=skein.Resources(memory=self.master_memory, vcores=1)),
            services={SERVICE: skein.Service(
                instances=spec.workers,
                resources=skein.Resources(memory=resources.memory or self.worker_memory,
                                          vcores=resources.vcores or self.worker_vcores,
                                          gpus=resources.gpus),
                env=container_env, script=script, max_restarts=0, allow_failures=False)},
        )

    async def reattach(self, attempt: Attempt) -> YarnWorkers:
        workers = YarnWorkers(self, attempt)
        workers.app_id = attempt.record.engine_info.get("id")
        if not workers.app_id:
            workers.refused = "no YARN application recorded for this run"
        return workers

    async def abandon(self, record: RunRecord) -> list[str]:
        """Kill the run's applications still alive: the recorded one, and any carrying the
        run's tag (submitted just before a crash, before its id was saved)."""
        def find() -> list[str]:
            client = self.client()
            found = {record.engine_info.get("id")} - {None}
            for report in client.get_applications(states=list(LIVE_STATES)):
                if run_tag(record.id) in report.tags:
                    found.add(report.id)
            for app_id in found:
                with contextlib.suppress(Exception):
                    client.kill_application(app_id)
            return sorted(found)
        return await self.blocking(find)

    async def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await self.blocking(client.close)


@dataclass
class _Container:
    index: int
    container_id: str
    node_http: str
    state: str
    exit_message: str


class YarnWorkers:
    """One attempt's YARN application."""

    def __init__(self, engine: YarnEngine, attempt: Attempt) -> None:
        self.engine = engine
        self.attempt = attempt
        self.app_id: str | None = None
        self.refused: str | None = None  # YARN would not take the application at all
        self._seen = Observation()
        self._containers: dict[int, _Container] = {}
        self._app_client: skein.ApplicationClient | None = None
        self._stopping = False
        self._bind_checked: set[int] = set()
        self._logs = _LogCopier(attempt)
        self._next_observe = self._next_logs = 0.0
        self._asking: asyncio.Future[None] | None = None

    # --- watching -------------------------------------------------------------------------

    async def observe(self) -> Observation:
        if self.refused is not None:
            self._seen.failure, self._seen.over = self.refused, True
            return self._seen
        now = asyncio.get_running_loop().time()
        if not self._seen.over and now >= self._next_observe:
            self._next_observe = now + self.engine.poll_interval
            await self._ask_yarn()
        return self._seen

    async def _ask_yarn(self) -> None:
        """One look at the application, in a thread; a look that YARN keeps waiting is left
        running (and not repeated) while the launcher goes on deciding: cancel and timeout
        must still work when the ResourceManager does not answer."""
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(asyncio.to_thread(self._observe))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._asking), self.engine.poll_interval * 4)

    def _observe(self) -> None:
        assert self.app_id is not None
        client = self.engine.client()
        try:
            report = client.application_report(self.app_id)
        except (KeyError, ValueError) as exc:  # the ResourceManager no longer knows it
            self._seen.failure = f"YARN application {self.app_id} is gone: {_first_lines(str(exc))}"
            self._seen.over = True
            return
        except Exception as exc:  # unreachable for now: the run's deadlines still hold
            log.warning("run %s: cannot ask YARN about %s: %s", self.attempt.record.id,
                        self.app_id, _first_lines(str(exc)))
            return
        state = str(report.state)
        info = self.attempt.record.engine_info
        info.update(state=state, final_status=str(report.final_status),
                    url=report.tracking_url or info.get("url", ""))
        if state == "RUNNING":
            self._watch_containers()
        elif state not in LIVE_STATES:
            self._ended(state, str(report.final_status), report.diagnostics or "")

    def _watch_containers(self) -> None:
        seen = self._seen
        try:
            if self._app_client is None:
                self._app_client = self.engine.client().connect(self.app_id, wait=False)
            containers = self._app_client.get_containers(services=[SERVICE],
                                                         states=list(_ALL_CONTAINER_STATES))
            ready = self._app_client.kv.get_prefix(READY_PREFIX)
            codes = self._app_client.kv.get_prefix(EXIT_PREFIX)
        except Exception:
            self._app_client = None  # the master is going away: the report will say how
            return
        for key in ready:
            seen.ready.add(int(key[len(READY_PREFIX):]))
        for key, value in codes.items():  # what the worker's bootstrap saw: the real code
            seen.exited.setdefault(int(key[len(EXIT_PREFIX):]), int(value))
        for container in containers:
            if not container.yarn_container_id:
                continue  # not placed yet
            state = str(container.state)
            self._containers[container.instance] = _Container(
                container.instance, container.yarn_container_id,
                container.yarn_node_http_address, state, container.exit_message or "")
            if state in ("SUCCEEDED", "FAILED", "KILLED") and container.instance not in seen.exited:
                seen.exited[container.instance] = exit_code(state, container.exit_message)
        self._check_bind_failures()

    def _check_bind_failures(self) -> None:
        """A failed worker whose last words say its port was taken: a new attempt helps."""
        for index, code in self._seen.exited.items():
            if code != 0 and index in self._containers and index not in self._bind_checked:
                self._bind_checked.add(index)
                self._logs.copy(self._containers[index])  # its last words first
                if self._logs.shows_bind_failure(index):
                    self._seen.bind_failed.add(index)

    def _ended(self, state: str, final_status: str, diagnostics: str) -> None:
        """The application is over: every worker is gone."""
        seen = self._seen
        seen.over = True
        for index, code in _FAILED.findall(diagnostics):  # a worker ended it (yarn_worker)
            seen.exited.setdefault(int(index), int(code))
        if seen.exited:
            self._check_bind_failures()
        for index in range(self.attempt.workers):
            if index not in seen.exited and final_status == "SUCCEEDED":
                seen.exited[index] = 0
        if final_status != "SUCCEEDED" and not self._stopping:
            seen.failure = (f"YARN application {self.app_id} {state.lower()} "
                            f"({final_status.lower()}): {_first_lines(diagnostics)}")

    async def fetch_logs(self, *, now: bool = False) -> None:
        clock = asyncio.get_running_loop().time()
        if self._containers and (now or clock >= self._next_logs):
            self._next_logs = clock + self.engine.log_interval
            await self.engine.blocking(self._logs.copy_all, list(self._containers.values()))

    # --- stopping -------------------------------------------------------------------------

    async def terminate(self) -> None:
        self._stopping = True
        if self.app_id is not None and not self._seen.over:
            with contextlib.suppress(Exception):
                await self.engine.call("kill_application", self.app_id)

    async def kill(self) -> None:
        await self.terminate()  # YARN's kill is already final: the NodeManager escalates

    async def release(self, *, detach: bool = False) -> None:
        if not detach and self.app_id is not None:
            await self._settle()
        await self.fetch_logs(now=True)
        if self._app_client is not None:
            with contextlib.suppress(Exception):
                await self.engine.blocking(self._app_client.close)
            self._app_client = None


    async def _settle(self, grace: float = 10.0) -> None:
        """Every worker is gone: let the application finish on its own (its master winds
        down), record its final state, and kill it if it lingers, so none is left behind.
        Bounded: a ResourceManager that does not answer is reported, not waited for."""
        loop = asyncio.get_running_loop()
        killed = False
        deadline = loop.time() + grace
        while not self._seen.over:
            await self._ask_yarn()
            if self._seen.over:
                break
            if loop.time() > deadline:
                if killed:
                    log.warning("run %s: YARN application %s did not end; left to YARN",
                                self.attempt.record.id, self.app_id)
                    return
                self._stopping = killed = True
                with contextlib.suppress(Exception):
                    await self.engine.call("kill_application", self.app_id)
                deadline = loop.time() + grace  # YARN's kill takes effect within seconds
            await asyncio.sleep(0.25)


class _LogCopier:
    """Appends each worker container's log, as its NodeManager serves it, to the run's log
    file for that worker; how far each container's log was copied is kept in the run's
    directory, so a re-attached daemon neither repeats nor loses output."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.state_file = attempt.run_dir / "yarn-logs.json"
        try:
            self.copied: dict[str, int] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            self.copied = {}
        self.starts: dict[int, int] = {}  # log file offset where this attempt's output starts

    def copy_all(self, containers: list[_Container]) -> None:
        for container in containers:
            self.copy(container)

    def copy(self, container: _Container) -> None:
        done = self.copied.get(container.container_id)
        path = self.attempt.log_paths[container.index]
        if done is None:
            header = (f"--- p2pdata run {self.attempt.record.id} attempt {self.attempt.number} "
                      f"worker {container.index}: YARN container {container.container_id} "
                      f"on {container.node_http}\n")
            with open(path, "ab") as log:
                log.write(header.encode())
                self.starts[container.index] = log.tell()
            done = 0
        data = self._fetch(container, done)
        if data is None:
            self.copied[container.container_id] = done
        else:
            with open(path, "ab") as log:
                log.write(data)
            self.copied[container.container_id] = done + len(data)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.copied))
        tmp.replace(self.state_file)

    def _fetch(self, container: _Container, done: int) -> bytes | None:
        """The bytes of the container's log after `done`, or None when unreachable."""
        base = (f"http://{container.node_http}/ws/v1/node/containerlogs/"
                f"{urllib.parse.quote(container.container_id)}/{SERVICE}.log")
        for size in ((-_LOG_CHUNK if done else None), None):
            url = base if size is None else f"{base}?size={size}"
            try:
                with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:
                    body = response.read()
            except (urllib.error.URLError, OSError):
                return None
            parsed = _parse_log_response(body)
            if parsed is None:
                return None
            length, contents = parsed
            start = length - len(contents)  # where the bytes served begin in the log
            if start <= done:
                return contents[done - start:]
        return None

    def shows_bind_failure(self, index: int) -> bool:
        return procs.log_shows_bind_failure(self.attempt.log_paths[index],
                                            self.starts.get(index, 0))


def _parse_log_response(body: bytes) -> tuple[int, bytes] | None:
    """(the log's full length, the bytes served) from a NodeManager containerlogs answer:
    header lines up to `LogContents:`, the bytes, then an `End of LogType` footer."""
    match = re.search(rb"LogLength:(\d+)\r?\nLogContents:\r?\n", body)
    if match is None:
        return None
    length = int(match.group(1))
    contents = body[match.end():]
    end = contents.rfind(b"End of LogType:")
    if end >= 0:
        contents = contents[:end]
    return length, contents[:length]


def _first_lines(text: str, limit: int = 600) -> str:
    text = " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit] + "…"


def _set_property(path: Path, name: str, value: str) -> None:
    """Set one property in a Hadoop XML configuration file, creating the file if needed."""
    root = ET.parse(path).getroot() if path.exists() else ET.Element("configuration")
    for prop in root.findall("property"):
        if prop.findtext("name") == name:
            root.remove(prop)
    prop = ET.SubElement(root, "property")
    ET.SubElement(prop, "name").text = name
    ET.SubElement(prop, "value").text = value
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Any:
    """Set environment variables for the duration of a call that reads them (Skein's driver
    start-up), then put back what was there."""
    with _ENV_LOCK:
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
