"""The run state machine, driven by hand with a fake clock: no processes, no sleeping."""

import pytest

from p2pdata.training import Action, RunMachine, RunState
from p2pdata.training.machine import Recovery, recover


def started(workers: int = 2, **kwargs: float) -> RunMachine:
    machine = RunMachine(workers, kill_grace=5, **kwargs)  # type: ignore[arg-type]
    machine.start(0.0)
    return machine


def test_all_workers_exit_zero_succeeds() -> None:
    machine = started()
    machine.exited(0, 0)
    assert machine.tick(1) == []
    machine.exited(1, 0)
    assert machine.tick(2) == [Action.FINISH]
    assert (machine.state, machine.exit_code) == (RunState.SUCCEEDED, 0)


def test_crash_terminates_group_then_kills_after_grace() -> None:
    machine = started()
    machine.exited(1, 3)
    assert machine.tick(1) == [Action.TERMINATE]
    assert machine.tick(5.9) == []
    assert machine.tick(6) == [Action.KILL]
    assert machine.state is RunState.RUNNING  # not over until every worker is gone
    machine.exited(0, -9)
    assert machine.tick(6.1) == [Action.FINISH]
    assert machine.state is RunState.FAILED
    assert machine.exit_code == 3
    assert machine.reason == "worker 1 exited with code 3"


def test_startup_deadline() -> None:
    machine = started(startup_timeout=10)
    machine.ready(0)
    assert machine.tick(9.9) == []
    assert machine.tick(10) == [Action.TERMINATE]
    machine.exited(0, -15)
    machine.exited(1, -15)
    assert machine.tick(10.1) == [Action.FINISH]
    assert machine.state is RunState.FAILED
    assert "start-up deadline" in machine.reason and "[1]" in machine.reason


def test_ready_workers_do_not_trip_startup_deadline() -> None:
    machine = started(startup_timeout=10)
    machine.ready(0)
    machine.ready(1)
    assert machine.tick(100) == []


def test_overall_timeout() -> None:
    machine = started(timeout=60)
    assert machine.tick(59) == []
    assert machine.tick(60) == [Action.TERMINATE]
    machine.exited(0, -15)
    machine.exited(1, -15)
    machine.tick(61)
    assert machine.state is RunState.TIMED_OUT


def test_cancel_running_and_queued() -> None:
    machine = started()
    machine.cancel()
    assert machine.tick(1) == [Action.TERMINATE]
    machine.exited(0, -15)
    machine.exited(1, -15)
    assert machine.tick(2) == [Action.FINISH]
    assert machine.state is RunState.CANCELLED
    queued = RunMachine(1)
    queued.cancel()
    assert queued.state is RunState.CANCELLED
    assert queued.tick(0) == []


def test_bind_failure_relaunches_without_using_retries() -> None:
    machine = started(port_retries=1)
    machine.exited(0, 1, bind_failed=True)
    assert machine.tick(1) == [Action.TERMINATE]
    machine.exited(1, -15)
    assert machine.tick(2) == [Action.RELAUNCH]
    assert machine.attempt == 1 and machine.state is RunState.RUNNING
    assert machine.exit_codes == {}
    # Second bind failure: no port retries left, so it is an ordinary failure.
    machine.exited(0, 1, bind_failed=True)
    machine.exited(1, -15)
    assert machine.tick(3) == [Action.FINISH]
    assert machine.state is RunState.FAILED


def test_retries_relaunch_after_failure_and_restart_startup_clock() -> None:
    machine = started(retries=1, startup_timeout=10)
    machine.exited(0, 2)
    machine.exited(1, 0)
    assert machine.tick(5) == [Action.RELAUNCH]
    assert machine.tick(14) == []  # the new attempt's start-up clock began at 5
    assert machine.tick(15) == [Action.TERMINATE]


def test_start_twice_is_an_error() -> None:
    machine = started()
    with pytest.raises(ValueError):
        machine.start(1)


def recovered(state: RunState, *, retries_left: int = 0, spawned: bool = False,
              reason: str = "") -> Recovery:
    return recover(state, reason=reason, retries_left=retries_left, attempt=2, spawned=spawned,
                   cause="daemon restarted")


def test_after_a_restart_queued_runs_queue_again() -> None:
    fate = recovered(RunState.QUEUED)
    assert (fate.state, fate.attempt, fate.retries_left) == (RunState.QUEUED, 2, 0)
    assert fate.reason == "re-queued: daemon restarted before it started"
    # Still starting (some workers spawned): a fresh attempt number, so stale ready files
    # of the old one do not count.
    assert recovered(RunState.QUEUED, spawned=True).attempt == 3
    # Re-queued by an earlier stop: it keeps saying why.
    assert recovered(RunState.QUEUED, reason="attempt 1 ended: x").reason == "attempt 1 ended: x"


def test_after_a_restart_running_runs_fail_unless_they_may_retry() -> None:
    fate = recovered(RunState.RUNNING, spawned=True)
    assert (fate.state, fate.reason) == (RunState.FAILED, "daemon restarted while running")
    fate = recovered(RunState.RUNNING, retries_left=2, spawned=True)
    assert (fate.state, fate.retries_left, fate.attempt) == (RunState.QUEUED, 1, 3)
    assert fate.reason == "attempt 2 ended: daemon restarted while running; re-queued"
    with pytest.raises(ValueError, match="over"):
        recovered(RunState.SUCCEEDED)


def test_interrupt_ends_the_attempt_and_decides_like_a_restart() -> None:
    queued = RunMachine(1)
    queued.interrupt()
    assert queued.state is RunState.QUEUED and queued.tick(0) == []

    machine = started(retries=1)
    machine.interrupt("daemon stopped")
    assert machine.tick(1) == [Action.TERMINATE]
    assert machine.tick(6) == [Action.KILL]
    machine.exited(0, -9)
    machine.exited(1, -9)
    assert machine.tick(7) == [Action.FINISH]
    assert (machine.state, machine.retries_left) == (RunState.QUEUED, 0)
    assert machine.reason == "attempt 0 ended: daemon stopped while running; re-queued"

    machine = started()
    machine.interrupt("daemon stopped")
    machine.exited(0, -15)  # the workers got the same SIGTERM the daemon did
    machine.exited(1, -15)
    assert machine.tick(1) == [Action.FINISH]
    assert (machine.state, machine.reason) == (RunState.FAILED, "daemon stopped while running")


def test_a_machine_can_begin_at_a_later_attempt() -> None:
    machine = RunMachine(1, attempt=3)
    machine.start(0)
    assert machine.attempt == 3
