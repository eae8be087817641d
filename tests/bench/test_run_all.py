"""The benchmarks' smoke run (what CI runs) and run_all's comparison with the last full table."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_warnings_only_past_the_noise_and_in_the_worse_direction(tmp_path: Path) -> None:
    module = run_all()
    table = tmp_path / "full.md"
    table.write_text(
        "| benchmark | figure | target | ok | noise |\n| --- | --- | --- | --- | --- |\n"
        "| publish | 0.50 | 0.45 | yes | 10 % |\n"
        "| search_p95 | 10.0 | 20 | yes | 10 % |\n"
        "| fetch_to_hdfs | 1.10 | 1.2 | yes | 10 % | 1.05 | swarm:2.0+land:1.5/fetch:3.6 |\n")
    previous = module.read_table(table)
    assert previous["publish"] == (0.5, 0.1)
    assert previous["fetch_to_hdfs"] == (1.1, 0.1)  # newer tables: floor and CPU columns after
    rows = [
        "RESULT publish ratio=0.40 target=0.45 ok=no",  # higher is better: 20 % worse
        "RESULT search_p95 value=10.5 target=20 ok=yes",  # lower is better: 5 %, in the noise
        "RESULT fetch_to_hdfs ratio=0.90 target=1.2 ok=yes",  # lower is better: improved
        "RESULT bench_launch.py failed exit=1",  # no figure: nothing to compare
    ]
    [warning] = module.regressions(rows, 0.02, previous)
    assert warning.startswith("WARNING: publish = 0.4, 20% worse than 0.5")
    assert module.regressions(rows, 0.25, previous) == []  # a noisier run now: no warning


@pytest.mark.hdfs
@pytest.mark.timeout(900)
def test_quick_run_prints_every_benchmarks_results(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent)}
    process = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick", "--out",
                              str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    [table] = tmp_path.glob("*-quick.md")
    names = [line.split(" | ")[0].lstrip("| ") for line in table.read_text().splitlines()
             if line.startswith("| ") and not line.startswith(("| benchmark", "| ---"))]
    assert {"publish", "search_p95", "landing", "swarm_one_seed", "swarm_scaling",
            "fetch_to_hdfs"} <= set(names), names
    assert len(names) >= 7  # bench_launch too


def test_the_last_full_table_is_found_among_the_committed_ones() -> None:
    module = run_all()
    table = module.last_full_table()
    assert table is not None and table.exists(), "no committed full table found"
    assert table.parent == BENCH / "results" and not table.name.endswith("-quick.md")
    assert "publish" in module.read_table(table)
