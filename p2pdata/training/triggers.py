"""Trigger rules: which jobs a landed dataset starts. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from p2pdata.catalog.manifest import Manifest
from p2pdata.training.spec import JobSpec


def matches(spec: JobSpec, manifest: Manifest) -> bool:
    """True when the spec's trigger accepts this dataset; a spec without trigger never does."""
    trigger = spec.trigger
    if trigger is None:
        return False
    if not fnmatchcase(manifest.name, trigger.dataset):
        return False
    if trigger.publisher is not None and trigger.publisher != manifest.owner:
        return False
    return all(tag in manifest.tags for tag in trigger.tags)


def matching_jobs(specs: Iterable[JobSpec], manifest: Manifest) -> list[JobSpec]:
    """Every spec the dataset triggers, in the order given."""
    return [spec for spec in specs if matches(spec, manifest)]
