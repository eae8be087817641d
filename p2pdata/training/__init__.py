"""Training: job specs, trigger rules, the launcher and its engines, reading landed datasets.

The daemon uses `JobRegistry`, `matching_jobs`, `EngineRegistry` and `Launcher`; an engine
implements `Engine` (see `engine`); training scripts use
`open_dataset`, `to_tf_dataset` and `worker_started`. Nothing here imports TensorFlow
until `to_tf_dataset` is called.
"""

from p2pdata.training.data import open_dataset, to_numpy, to_tf_dataset
from p2pdata.training.engine import (
    Attempt,
    Engine,
    EngineRegistry,
    Observation,
    Workers,
)
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
    "matches",
    "matching_jobs",
    "open_dataset",
    "to_numpy",
    "to_tf_dataset",
    "worker_started",
]
