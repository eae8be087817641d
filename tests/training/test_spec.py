from pathlib import Path

import pytest

from p2pdata.errors import JobSpecError, NotFound
from p2pdata.training import JobRegistry, JobSpec

GOOD = """
name = "train-toy"
workers = 2
framework = "tensorflow"
timeout = 600
retries = 1
output_dir = "out/{job}/{run_id}"

[trigger]
dataset = "toy*"
publisher = "cluster-a"
tag = ["tabular"]

[entry]
script = "train.py"
args = ["--epochs", "2"]

[env]
EPOCHS = 2
"""


def write(tmp_path: Path, text: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_valid_spec(tmp_path: Path) -> None:
    spec = JobSpec.load(write(tmp_path, GOOD))
    assert spec.name == "train-toy"
    assert spec.workers == 2 and spec.framework == "tensorflow"
    assert spec.timeout == 600.0 and spec.retries == 1
    assert spec.startup_timeout == 600.0  # tensorflow default: a missing peer hangs forever
    assert spec.trigger is not None
    assert (spec.trigger.dataset, spec.trigger.publisher, spec.trigger.tags) == (
        "toy*", "cluster-a", ("tabular",))
    assert spec.entry.script == tmp_path / "train.py"  # relative to the spec file
    assert spec.entry.argv("py") == ["py", str(tmp_path / "train.py"), "--epochs", "2"]
    assert spec.env == {"EPOCHS": "2"}
    assert spec.output_dir == str(tmp_path / "out/{job}/{run_id}")


def test_minimal_spec_defaults(tmp_path: Path) -> None:
    spec = JobSpec.load(write(tmp_path, 'name = "m"\n[entry]\nmodule = "pkg.train"\n'))
    assert spec.trigger is None and spec.workers == 1 and spec.framework == "none"
    assert spec.startup_timeout is None and spec.timeout is None
    assert spec.entry.argv("py") == ["py", "-m", "pkg.train"]


@pytest.mark.parametrize(("text", "field"), [
    ('name = "Bad Name"\n[entry]\nmodule = "m"\n', "name"),
    ('name = "j"\nworkers = 0\n[entry]\nmodule = "m"\n', "workers"),
    ('name = "j"\nworkers = "2"\n[entry]\nmodule = "m"\n', "workers"),
    ('name = "j"\nframework = "jax"\n[entry]\nmodule = "m"\n', "framework"),
    ('name = "j"\ntimeout = -1\n[entry]\nmodule = "m"\n', "timeout"),
    ('name = "j"\nwokers = 2\n[entry]\nmodule = "m"\n', "wokers"),
    ('name = "j"\n', "entry"),
    ('name = "j"\n[entry]\nmodule = "m"\nscript = "s.py"\n', "entry"),
    ('name = "j"\n[entry]\nscript = "s.py"\nargs = [1]\n', "entry.args"),
    ('name = "j"\n[entry]\nmodule = "m"\n[trigger]\npublisher = "x"\n', "dataset"),
    ('name = "j"\n[entry]\nmodule = "m"\n[trigger]\ndataset = "*"\ncolour = 1\n',
     "trigger.colour"),
    ('name = "j"\n[entry]\nmodule = "m"\n[env]\n"A-B" = "1"\n', "env.A-B"),
    ('name = "j"\noutput_dir = "out/{nope}"\n[entry]\nmodule = "m"\n', "output_dir"),
    ('name = "j"\n[entry\n', "TOML"),
    ('name = "j"\ncache = "yes"\n[entry]\nmodule = "m"\n', "cache: expected true or false"),
])
def test_invalid_specs_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(JobSpecError) as error:
        JobSpec.load(path)
    assert str(path) in str(error.value)
    assert field in str(error.value)


def test_registry_add_get_remove(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    registry = JobRegistry(tmp_path / "jobs")
    added = registry.add(write(source, GOOD))
    # The copy still finds the script next to the original spec.
    assert added.entry.script == source / "train.py"
    assert registry.get("train-toy").entry.script == source / "train.py"
    with pytest.raises(JobSpecError, match="already exists"):
        registry.add(write(source, GOOD))
    registry.add(write(source, GOOD), replace=True)
    assert [spec.name for spec in registry.specs()] == ["train-toy"]
    registry.remove("train-toy")
    with pytest.raises(NotFound):
        registry.get("train-toy")


def test_registry_refuses_invalid_and_reports_broken_files(tmp_path: Path) -> None:
    registry = JobRegistry(tmp_path / "jobs")
    with pytest.raises(JobSpecError, match="workers"):
        registry.add(write(tmp_path, 'name = "j"\nworkers = 0\n[entry]\nmodule = "m"\n'))
    assert not (tmp_path / "jobs" / "j.toml").exists()
    (tmp_path / "jobs").mkdir()
    write(tmp_path / "jobs", "name = 3\n", "broken.toml")
    write(tmp_path / "jobs", 'name = "ok"\n[entry]\nmodule = "m"\n', "ok.toml")
    specs, problems = registry.scan()
    assert [spec.name for spec in specs] == ["ok"]
    assert len(problems) == 1 and "broken.toml" in str(problems[0])


def test_example_spec_is_valid() -> None:
    from tests.training.conftest import EXAMPLES

    spec = JobSpec.load(EXAMPLES / "train_keras.toml")
    assert spec.entry.script == EXAMPLES / "train_keras.py" and spec.entry.script.exists()
    assert spec.workers == 2 and spec.framework == "tensorflow"


def test_registry_add_text_resolves_against_base_dir(tmp_path: Path) -> None:
    registry = JobRegistry(tmp_path / "jobs")
    text = 'name = "t"\n[entry]\nscript = "train.py"\n'
    spec = registry.add_text(text, "t.toml", base_dir=tmp_path / "client")
    assert spec.entry.script == tmp_path / "client" / "train.py"
    assert spec.source == tmp_path / "jobs" / "t.toml"
    with pytest.raises(JobSpecError, match=r"pasted\.toml: workers"):
        registry.add_text('name = "u"\nworkers = -1\n[entry]\nmodule = "m"\n', "pasted.toml")
    spec = registry.add_text(text.replace('"t"', '"v"'), "v.toml")
    assert spec.entry.script == tmp_path / "jobs" / "train.py"


@pytest.mark.parametrize("text", [
    GOOD,
    'name = "m"\n[entry]\nmodule = "pkg.train"\n',
    'name = "w"\nworkdir = "wd"\npython = "/usr/bin/python3"\n[trigger]\ndataset = "*"\n'
    '[entry]\nscript = "t.py"\n',
    'name = "c"\ncache = true\n[entry]\nmodule = "m"\n',
])
def test_spec_comes_back_from_a_runs_record(tmp_path: Path, text: str) -> None:
    """A run re-queued after a restart runs the spec it was queued with, exactly."""
    spec = JobSpec.load(write(tmp_path, text))
    assert JobSpec.from_stored(spec.to_dict()) == spec


def test_a_damaged_stored_spec_is_refused_clearly() -> None:
    stored = {"name": "j", "entry": {"module": "m", "script": None, "args": []}, "workers": 0}
    with pytest.raises(JobSpecError, match="workers"):
        JobSpec.from_stored(stored)
