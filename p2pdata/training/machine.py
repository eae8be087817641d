"""The decisions of one training run, as a plain state machine fed with events and a clock.

The launcher reports what the engine saw (a worker became ready, a worker exited, the
engine cannot go on, cancel was asked for, the daemon is stopping) and calls `tick(now)`; the
machine answers with actions (terminate or kill the workers, relaunch on fresh ports, finish,
or detach from workers that outlive the daemon). `recover` decides
what becomes of a run a daemon stopped or died under. No I/O, so every deadline is testable
without sleeping.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RunState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING)


class Action(enum.Enum):
    TERMINATE = "terminate"  # SIGTERM every worker's process group
    KILL = "kill"  # SIGKILL them: the grace period is over
    RELAUNCH = "relaunch"  # every worker is gone; start a new attempt on fresh ports
    FINISH = "finish"  # every worker is gone; the run is over (see state, reason, exit_code)
    DETACH = "detach"  # the daemon stops; the workers run on and are re-attached after it


@dataclass
class _Verdict:
    state: RunState
    reason: str
    exit_code: int | None


@dataclass(frozen=True)
class Recovery:
    """What becomes of a run that was queued or running when its daemon stopped."""

    state: RunState  # QUEUED: run it (again); RUNNING: re-attach to it; FAILED: it is over
    reason: str
    retries_left: int
    attempt: int  # the attempt number to run next


def recover(state: RunState, *, reason: str, retries_left: int, attempt: int, spawned: bool,
            cause: str, reattachable: bool = False) -> Recovery:
    """Decide the fate of a run the daemon stopped (`cause` = "daemon stopped") or died under
    ("daemon restarted").

    A running run whose workers outlive the daemon (`reattachable`: a YARN application the
    engine can find again by its id) simply goes on: the new daemon re-attaches to it, so it
    is neither lost nor started twice.

    A queued run, or one still starting (`spawned`: some workers were already launched), did
    nothing worth keeping: it goes back to the queue, keeping a `reason` it already has (why
    an earlier stop re-queued it). A running one is re-queued only when its spec allows
    retries, and uses one up, so a job that keeps bringing the daemon down cannot loop
    forever; otherwise it fails, saying why. A new attempt gets a fresh number, so nothing
    the old one left behind (ready files) counts for it.
    """
    if state is RunState.QUEUED:
        return Recovery(RunState.QUEUED, reason or f"re-queued: {cause} before it started",
                        retries_left, attempt + 1 if spawned else attempt)
    if state is not RunState.RUNNING:
        raise ValueError(f"a {state} run is over: there is nothing to recover")
    if reattachable:
        return Recovery(RunState.RUNNING, reason, retries_left, attempt)
    if retries_left > 0:
        return Recovery(RunState.QUEUED, f"attempt {attempt} ended: {cause} while running; "
                        "re-queued", retries_left - 1, attempt + 1)
    return Recovery(RunState.FAILED, f"{cause} while running", retries_left, attempt)


class RunMachine:
    """One run of `workers` processes, possibly over several attempts."""

    def __init__(
        self,
        workers: int,
        *,
        startup_timeout: float | None = None,
        timeout: float | None = None,
        retries: int = 0,
        port_retries: int = 3,
        kill_grace: float = 5.0,
        attempt: int = 0,
    ) -> None:
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.timeout = timeout
        self.retries_left = retries
        self.port_retries_left = port_retries
        self.kill_grace = kill_grace
        self.state = RunState.QUEUED
        self.reason = ""
        self.exit_code: int | None = None
        self.attempt = attempt  # above 0 for a run re-queued after a restart
        self.exit_codes: dict[int, int] = {}
        self._started_at = 0.0
        self._attempt_at = 0.0
        self._ready: set[int] = set()
        self._bind_failed: set[int] = set()
        self._cancel_reason: str | None = None
        self._interrupt_cause: str | None = None
        self._detach = False
        self._engine_failure: str | None = None
        self._gone = False
        self._verdict: _Verdict | None = None
        self._relaunch_reason: str | None = None
        self._term_at: float | None = None
        self._killed = False

    # --- events -------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The workers of the first attempt have just been spawned."""
        if self.state is not RunState.QUEUED:
            raise ValueError(f"cannot start a run that is {self.state}")
        self.state = RunState.RUNNING
        self._started_at = self._attempt_at = now

    def resume(self, now: float, elapsed: float) -> None:
        """Re-attached after a daemon restart to workers started `elapsed` seconds ago: the
        timeout and the start-up deadline still count from their start."""
        if self.state is not RunState.QUEUED:
            raise ValueError(f"cannot resume a run that is {self.state}")
        self.state = RunState.RUNNING
        self._started_at = self._attempt_at = now - max(elapsed, 0.0)

    def ready(self, index: int) -> None:
        self._ready.add(index)

    def exited(self, index: int, code: int, *, bind_failed: bool = False) -> None:
        """Worker `index` exited with `code` (negative: killed by that signal)."""
        self.exit_codes.setdefault(index, code)
        if bind_failed and code != 0:
            self._bind_failed.add(index)

    def engine_failed(self, reason: str) -> None:
        """The engine cannot go on with this attempt (YARN cannot place the application, the
        application is gone): the run fails with the engine's reason. Not retried: the same
        request would meet the same refusal."""
        if self._engine_failure is None:
            self._engine_failure = reason

    def gone(self) -> None:
        """No worker of this attempt is left, whether or not each one's exit code is known
        (a YARN application that ended takes its containers with it)."""
        self._gone = True

    def cancel(self, reason: str = "cancelled") -> None:
        if self.state is RunState.QUEUED:
            self.state = RunState.CANCELLED
            self.reason = reason
        elif self._cancel_reason is None:
            self._cancel_reason = reason

    def interrupt(self, cause: str = "daemon stopped", *, detach: bool = False) -> None:
        """The daemon is stopping. A queued run simply stays queued; a running one ends its
        attempt and then finishes as `recover` decides (queued again, or failed), unless its
        workers outlive the daemon (`detach`): then it is left running, to be re-attached."""
        if self.state is RunState.RUNNING and self._interrupt_cause is None:
            self._interrupt_cause = cause
            self._detach = detach

    # --- decisions ----------------------------------------------------------------------

    @property
    def all_exited(self) -> bool:
        return self._gone or len(self.exit_codes) == self.workers

    def tick(self, now: float) -> list[Action]:
        if self.state is not RunState.RUNNING:
            return []
        if (self._detach and self._cancel_reason is None and self._verdict is None
                and self._relaunch_reason is None):
            return [Action.DETACH]
        if self._verdict is None and self._relaunch_reason is None:
            self._decide(now)
        if self._verdict is None and self._relaunch_reason is None:
            return []
        if not self.all_exited:
            if self._term_at is None:
                self._term_at = now
                return [Action.TERMINATE]
            if not self._killed and now - self._term_at >= self.kill_grace:
                self._killed = True
                return [Action.KILL]
            return []
        if self._verdict is not None:
            self.state = self._verdict.state
            self.reason = self._verdict.reason
            self.exit_code = self._verdict.exit_code
            return [Action.FINISH]
        self._new_attempt(now)
        return [Action.RELAUNCH]

    def _decide(self, now: float) -> None:
        if self._cancel_reason is not None:
            self._verdict = _Verdict(RunState.CANCELLED, self._cancel_reason, None)
            return
        if self._interrupt_cause is not None:
            fate = recover(RunState.RUNNING, reason=self.reason, retries_left=self.retries_left,
                           attempt=self.attempt, spawned=True, cause=self._interrupt_cause)
            self.retries_left = fate.retries_left
            self._verdict = _Verdict(fate.state, fate.reason, None)
            return
        if self._bind_failed and self.port_retries_left > 0:
            # A port we chose was taken between choosing and binding: not the job's fault.
            self.port_retries_left -= 1
            self._relaunch_reason = f"worker {min(self._bind_failed)} could not bind its port"
            return
        failed = sorted(i for i, code in self.exit_codes.items() if code != 0)
        if failed:
            code = self.exit_codes[failed[0]]
            self._fail(f"worker {failed[0]} exited with code {code}", code)
            return
        if self._engine_failure is not None:
            self._verdict = _Verdict(RunState.FAILED, self._engine_failure, None)
            return
        if self.all_exited:
            self._verdict = _Verdict(RunState.SUCCEEDED, "", 0)
            return
        if self.timeout is not None and now - self._started_at >= self.timeout:
            self._verdict = _Verdict(RunState.TIMED_OUT,
                                     f"timeout: still running after {self.timeout:g}s", None)
            return
        # A worker that already finished cleanly has certainly started.
        started = self._ready | set(self.exit_codes)
        if (self.startup_timeout is not None and len(started) < self.workers
                and now - self._attempt_at >= self.startup_timeout):
            missing = sorted(set(range(self.workers)) - started)
            self._fail(f"start-up deadline: worker(s) {missing} not started after "
                       f"{self.startup_timeout:g}s", None)

    def _fail(self, reason: str, code: int | None) -> None:
        if self.retries_left > 0:
            self.retries_left -= 1
            self._relaunch_reason = reason
        else:
            self._verdict = _Verdict(RunState.FAILED, reason, code)

    def _new_attempt(self, now: float) -> None:
        self.reason = f"attempt {self.attempt} ended: {self._relaunch_reason}"
        self.attempt += 1
        self._attempt_at = now
        self.exit_codes = {}
        self._ready = set()
        self._bind_failed = set()
        self._gone = False
        self._relaunch_reason = None
        self._term_at = None
        self._killed = False
