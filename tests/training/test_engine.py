"""The engine seam: engine and resources in job specs, the registry, the run machine's
decisions for engines (an engine's own failure, detaching from workers that outlive the
daemon, resuming them), and the launcher's handling of an engine that is slow to start its
workers (a stand-in engine). No processes, no cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from p2pdata.db import open_db
from p2pdata.errors import ConfigError, JobSpecError, TrainingError
from p2pdata.training import (
    Action,
    Attempt,
    EngineRegistry,
    JobSpec,
    Launcher,
    Observation,
    Resources,
    RunMachine,
    RunRecord,
    RunState,
)
from p2pdata.training.local import LocalEngine
from p2pdata.training.machine import recover
from p2pdata.training.worker import worker_env
from tests.training.conftest import make_manifest


def spec(**fields: object) -> JobSpec:
    return JobSpec.from_dict({"name": "job", "entry": {"module": "train"}, **fields})


def test_engine_and_resources_round_trip() -> None:
    job = spec(engine="yarn", resources={"memory": "2g", "vcores": 2, "gpus": 1})
    assert job.engine == "yarn"
    assert job.resources == Resources(memory=2048, vcores=2, gpus=1)
    assert JobSpec.from_stored(job.to_dict()) == job
    plain = spec()
    assert plain.engine is None and plain.resources == Resources()
    assert JobSpec.from_stored(plain.to_dict()) == plain


@pytest.mark.parametrize("value, mib", [(512, 512), ("512m", 512), ("1 GiB", 1024),
                                        ("2G", 2048), ("1048576k", 1024)])
def test_memory_units(value: object, mib: int) -> None:
    assert spec(resources={"memory": value}).resources.memory == mib


@pytest.mark.parametrize("fields, message", [
    ({"engine": "Yarn!"}, "engine: 'Yarn!' is not an engine name"),
    ({"resources": {"memory": "lots"}}, "resources.memory: expected MiB"),
    ({"resources": {"memory": 0}}, "resources.memory: must be at least 1 MiB"),
    ({"resources": {"vcores": 0}}, "resources.vcores: must be between 1 and 4096"),
    ({"resources": {"gpus": -1}}, "resources.gpus: must be between 0 and 4096"),
    ({"resources": {"gpus": True}}, "resources: gpus: expected an integer"),
    ({"resources": {"disk": 1}}, "resources.disk: unknown field"),
])
def test_bad_engine_or_resources_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        spec(**fields)


def test_registry_resolves_default_and_refuses_unknown() -> None:
    registry = EngineRegistry()
    assert registry.name_for(spec()) == "local"
    assert registry.name_for(spec(engine="yarn")) == "yarn"
    assert isinstance(registry.get("local"), LocalEngine)
    assert registry.get("local") is registry.get("local")  # made once
    with pytest.raises(JobSpecError, match="'nope' is not an engine of this daemon"):
        registry.name_for(spec(engine="nope"))
    with pytest.raises(ConfigError, match="default_engine: 'nope'"):
        EngineRegistry(default="nope")
    assert EngineRegistry(default="yarn").name_for(spec()) == "yarn"


def test_worker_env_builds_tf_config_and_torch_rendezvous() -> None:
    endpoints = ["10.0.0.1:2222", "10.0.0.2:2223"]
    env = worker_env("tensorflow", endpoints, 1, 2)
    assert '"worker": ["10.0.0.1:2222", "10.0.0.2:2223"]' in env["TF_CONFIG"]
    assert '"index": 1' in env["TF_CONFIG"]
    torch = worker_env("torch", endpoints[:1], 1, 2, one_host=False)
    assert (torch["MASTER_ADDR"], torch["MASTER_PORT"], torch["RANK"]) == ("10.0.0.1", "2222", "1")
    assert (torch["LOCAL_RANK"], torch["LOCAL_WORLD_SIZE"]) == ("0", "1")
    assert "TF_CONFIG" not in worker_env("none", [], 0, 1)


def test_engine_failure_fails_the_run_with_its_reason_and_no_retry() -> None:
    machine = RunMachine(2, retries=3, kill_grace=5)
    machine.start(0)
    machine.engine_failed("YARN: no node has 64 GiB memory")
    assert machine.tick(1) == [Action.TERMINATE]
    machine.exited(0, -15)
    machine.exited(1, -15)
    assert machine.tick(2) == [Action.FINISH]
    assert (machine.state, machine.reason) == (RunState.FAILED, "YARN: no node has 64 GiB memory")


def test_a_failed_worker_is_named_before_the_engine_failure_it_caused() -> None:
    machine = RunMachine(2, kill_grace=5)
    machine.start(0)
    machine.exited(1, 137)
    machine.engine_failed("application failed")
    assert machine.tick(1) == [Action.TERMINATE]
    machine.exited(0, -15)
    assert machine.tick(2) == [Action.FINISH]
    assert machine.reason == "worker 1 exited with code 137"


def test_detach_leaves_workers_running_and_cancel_still_wins() -> None:
    machine = RunMachine(2, kill_grace=5)
    machine.start(0)
    machine.interrupt("daemon stopped", detach=True)
    assert machine.tick(1) == [Action.DETACH]
    assert machine.state is RunState.RUNNING
    cancelled = RunMachine(1, kill_grace=5)
    cancelled.start(0)
    cancelled.cancel()
    cancelled.interrupt("daemon stopped", detach=True)
    assert cancelled.tick(1) == [Action.TERMINATE]


def test_recover_reattaches_a_detachable_run_and_resume_keeps_its_clock() -> None:
    fate = recover(RunState.RUNNING, reason="", retries_left=0, attempt=2, spawned=True,
                   cause="daemon restarted", reattachable=True)
    assert (fate.state, fate.attempt, fate.retries_left) == (RunState.RUNNING, 2, 0)
    machine = RunMachine(1, timeout=100, startup_timeout=30, kill_grace=5, attempt=2)
    machine.resume(1000.0, elapsed=90.0)  # started 90 s before the new daemon's now
    machine.ready(0)
    assert machine.tick(1005.0) == []
    assert machine.tick(1010.0) == [Action.TERMINATE]  # 100 s since the start
    machine.exited(0, -15)
    assert machine.tick(1011.0) == [Action.FINISH]
    assert machine.state is RunState.TIMED_OUT


def test_nodemanager_log_answers_are_parsed_to_length_and_bytes() -> None:
    from p2pdata.training.yarn import _parse_log_response

    body = (b"Container: container_1_0001_01_000002 on localhost:1\nLogAggregationType: LOCAL\n"
            b"====\nLogType:worker.log\nLogLastModifiedTime:Sun\nLogLength:306\nLogContents:\n"
            b"the last bytes\nEnd of LogType:worker.log.\n****\n\n")
    assert _parse_log_response(body) == (306, b"the last bytes\n")
    assert _parse_log_response(b"<html>404</html>") is None


@pytest.mark.parametrize("state, message, code", [
    ("FAILED", "Exception from container-launch.\nExit code: 137\n", 137),
    ("FAILED", "Container exited with a non-zero exit code 3. ", 3),
    ("FAILED", "Container failed during execution, see logs for more information.", 1),
    ("KILLED", "", -15),
    ("SUCCEEDED", "", 0),
])
def test_container_exit_codes(state: str, message: str, code: int) -> None:
    from p2pdata.training.yarn import exit_code

    assert exit_code(state, message) == code


def test_resourcemanager_setting_overrides_the_cluster_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xml.etree import ElementTree

    from p2pdata.training.yarn import YarnEngine

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "yarn-site.xml").write_text(
        "<configuration><property><name>yarn.resourcemanager.address</name>"
        "<value>old:1</value></property><property><name>keep</name><value>1</value>"
        "</property></configuration>")
    engine = YarnEngine({"resourcemanager": "rm.example:8032", "hadoop_conf_dir": str(conf),
                         "state_dir": str(tmp_path / "state")})
    engine.state_dir.mkdir()
    written = Path(engine._client_conf_dir()) / "yarn-site.xml"
    props = {p.findtext("name"): p.findtext("value")
             for p in ElementTree.parse(written).getroot().iter("property")}
    assert props == {"yarn.resourcemanager.address": "rm.example:8032", "keep": "1"}
    assert "old:1" in (conf / "yarn-site.xml").read_text()  # the operator's file is untouched
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    with pytest.raises(TrainingError, match="needs \\[yarn\\] resourcemanager or hadoop_conf_dir"):
        YarnEngine({"state_dir": str(tmp_path / "s2")})._client_conf_dir()


class _SlowEngine:
    """An engine whose start-up waits for the test: the window in which a cancel or a daemon
    stop arrives before the run machine is running. Its workers end when told to."""

    name = "slow"
    detachable = True

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.proceed = asyncio.Event()
        self.terminated = False

    async def launch(self, attempt: Attempt) -> _SlowWorkers:
        self.entered.set()
        await self.proceed.wait()
        attempt.record.engine_info = {"id": "slow-1", "state": "RUNNING"}
        return _SlowWorkers(self, attempt.spec.workers)

    async def reattach(self, attempt: Attempt) -> _SlowWorkers:
        return _SlowWorkers(self, attempt.spec.workers)

    async def abandon(self, record: RunRecord) -> list[str]:
        return []

    async def close(self) -> None:
        return None


class _SlowWorkers:
    def __init__(self, engine: _SlowEngine, workers: int) -> None:
        self.engine, self.workers = engine, workers

    async def observe(self) -> Observation:
        done = self.engine.terminated
        return Observation(exited=dict.fromkeys(range(self.workers), -15) if done else {},
                           over=done)

    async def fetch_logs(self) -> None:
        return None

    async def terminate(self) -> None:
        self.engine.terminated = True

    async def kill(self) -> None:
        self.engine.terminated = True

    async def release(self, *, detach: bool = False) -> None:
        return None


async def _slow_launcher(tmp_path: Path) -> tuple[Launcher, _SlowEngine, RunRecord]:
    engine = _SlowEngine()
    registry = EngineRegistry()
    registry.add(engine)
    launcher = Launcher(open_db(tmp_path / "state.db"), tmp_path / "runs", poll_interval=0.01,
                        engines=registry)
    await launcher.start()
    run = await launcher.submit(spec(engine="slow", workers=2), make_manifest(), "file:///d")
    await asyncio.wait_for(engine.entered.wait(), 10)
    return launcher, engine, run


async def test_cancel_while_the_engine_starts_the_workers_stops_them(tmp_path: Path) -> None:
    launcher, engine, run = await _slow_launcher(tmp_path)
    await launcher.cancel(run.id, "changed my mind")
    engine.proceed.set()
    run = await launcher.wait(run.id, timeout=10)
    await launcher.close()
    assert (run.state, run.reason) == (RunState.CANCELLED, "changed my mind")
    assert engine.terminated


async def test_daemon_stop_while_the_engine_starts_detaches_the_run(tmp_path: Path) -> None:
    launcher, engine, run = await _slow_launcher(tmp_path)
    closing = asyncio.create_task(launcher.close())
    await asyncio.sleep(0)  # close() has begun: the launcher is stopping
    engine.proceed.set()
    await asyncio.wait_for(closing, 10)
    stored = launcher.store.get(run.id)
    assert stored.state is RunState.RUNNING and stored.engine_info["id"] == "slow-1"
    assert not engine.terminated  # left running, to be re-attached by the next start
