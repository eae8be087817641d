"""Training: job specs, trigger rules, the launcher and its engines, reading landed datasets.

The daemon uses `JobRegistry`, `matching_jobs`, `EngineRegistry` and `Launcher`; an engine
implements `Engine` (see `engine`); training scripts use
`open_dataset`, `to_tf_dataset` and `worker_started`. Nothing here imports TensorFlow
until `to_tf_dataset` is called.

Names are imported on first use: a worker's bootstrap inside a YARN container imports this
package, and should not pay for pyarrow or the launcher before the job's script starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "iter_batches": "data", "list_files": "data", "open_dataset": "data", "to_numpy": "data",
    "to_pandas": "data", "to_tf_dataset": "data", "to_torch": "data",
    "Attempt": "engine", "Engine": "engine", "EngineRegistry": "engine",
    "Observation": "engine", "Workers": "engine",
    "Launcher": "launcher", "LogTail": "launcher", "RunRecord": "launcher",
    "RunStore": "launcher", "follow_file": "launcher", "follow_logs": "launcher",
    "Action": "machine", "RunMachine": "machine", "RunState": "machine",
    "Entry": "spec", "JobRegistry": "spec", "JobSpec": "spec", "Resources": "spec",
    "Trigger": "spec",
    "matches": "triggers", "matching_jobs": "triggers",
    "worker_started": "worker",
}
__all__ = [
    "Action",
    "Attempt",
    "Engine",
    "EngineRegistry",
    "Entry",
    "JobRegistry",
    "JobSpec",
    "Launcher",
    "LogTail",
    "Observation",
    "Resources",
    "RunMachine",
    "RunRecord",
    "RunState",
    "RunStore",
    "Trigger",
    "Workers",
    "follow_file",
    "follow_logs",
    "iter_batches",
    "list_files",
    "matches",
    "matching_jobs",
    "open_dataset",
    "to_numpy",
    "to_pandas",
    "to_tf_dataset",
    "to_torch",
    "worker_started",
]

if TYPE_CHECKING:
    from p2pdata.training.data import (
        iter_batches,
        list_files,
        open_dataset,
        to_numpy,
        to_pandas,
        to_tf_dataset,
        to_torch,
    )
    from p2pdata.training.engine import Attempt, Engine, EngineRegistry, Observation, Workers
    from p2pdata.training.launcher import (
        Launcher,
        LogTail,
        RunRecord,
        RunStore,
        follow_file,
        follow_logs,
    )
    from p2pdata.training.machine import Action, RunMachine, RunState
    from p2pdata.training.spec import Entry, JobRegistry, JobSpec, Resources, Trigger
    from p2pdata.training.triggers import matches, matching_jobs
    from p2pdata.training.worker import worker_started


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once imported, a plain attribute
    return value
