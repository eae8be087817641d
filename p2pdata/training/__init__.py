"""Training: job specs, trigger rules, the local launcher, and reading landed datasets.

The daemon uses `JobRegistry`, `matching_jobs` and `Launcher`; training scripts use
`open_dataset`, `to_tf_dataset` and `worker_started`. Nothing here imports TensorFlow
until `to_tf_dataset` is called.
"""

from p2pdata.training.data import (
    iter_batches,
    list_files,
    open_dataset,
    to_numpy,
    to_pandas,
    to_tf_dataset,
    to_torch,
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
from p2pdata.training.spec import Entry, JobRegistry, JobSpec, Trigger
from p2pdata.training.triggers import matches, matching_jobs
from p2pdata.training.worker import worker_started

__all__ = [
    "Action",
    "Entry",
    "JobRegistry",
    "JobSpec",
    "Launcher",
    "LogTail",
    "RunMachine",
    "RunRecord",
    "RunState",
    "RunStore",
    "Trigger",
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
