"""The one-command demo: three clusters on this machine, from publish to a trained model.

    python -m p2pdata.demo [--size-mb N] [--hdfs [--tier ssd] [--engine yarn]] [--keep-running]

alpha and beta publish the same generated Parquet dataset; gamma discovers them
over zeroconf (loopback only), searches, fetches from both with a progress bar,
lands the data (local store, or a real local HDFS with --hdfs) and trains the
example Keras model as soon as it lands.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from p2pdata.devcluster import DaemonProcess, daemon_config, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DATASET = "demo-clicks"
_ROWS_PER_FILE_MB = 1024 * 1024 // (4 * 9)  # 8 float32 features + a label ≈ 36 bytes a row


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def generate_dataset(directory: Path, size_mb: int, files: int = 8, seed: int = 7) -> None:
    """A learnable binary classification table spread over `files` Parquet files."""
    rng = np.random.default_rng(seed)
    weights = np.linspace(1.0, -1.0, 8, dtype="float32") + 0.5
    directory.mkdir(parents=True)
    rows = max(2000, size_mb * _ROWS_PER_FILE_MB // files)
    for part in range(files):
        x = rng.standard_normal((rows, 8), dtype="float32")
        columns = {f"f{i}": x[:, i] for i in range(8)}
        columns["label"] = (x @ weights > 0).astype("int8")
        # No compression: random floats do not compress, and the demo wants a known size.
        pq.write_table(pa.table(columns), directory / f"part-{part:05d}.parquet", compression="none")


def write_job_spec(directory: Path, max_rows: int, engine: str = "local") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # On YARN: two workers, each a container of its own, TF_CONFIG from their real endpoints.
    placement = ('engine = "yarn"\nworkers = 2\nstartup_timeout = 300\n'
                 '[resources]\nmemory = "1g"\nvcores = 1\n' if engine == "yarn" else "workers = 1\n")
    (directory / "demo-train.toml").write_text(
        f"""name = "demo-train"
description = "Train the example Keras model on every demo dataset that lands"
framework = "tensorflow"
timeout = 600
{placement}
[trigger]
dataset = "demo-*"

[entry]
script = {json.dumps(str(EXAMPLES / "train_keras.py"))}
args = ["--epochs", "3", "--max-rows", "{max_rows}"]
"""
    )


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="p2pdata-demo-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        store: dict[str, object] = {}
        yarn: dict[str, object] = {}
        if args.hdfs:
            from p2pdata.hdfs.localcluster import LocalHdfs

            with_yarn = args.engine == "yarn"
            step("starting a local Hadoop 3 HDFS (NameNode + three DataNodes, four storage "
                 "tiers, erasure coding)" + (" and YARN (ResourceManager + NodeManager)"
                                             if with_yarn else ""))
            hdfs = stack.enter_context(LocalHdfs(root / "hdfs", yarn=with_yarn))
            store = {"kind": "hdfs", "webhdfs_url": hdfs.webhdfs_url, "root": "/p2pdata",
                     "namenode": hdfs.namenode_address,
                     "storagepolicy_command": hdfs.storagepolicy_command,
                     "mover_command": hdfs.mover_command, "fsck_command": hdfs.fsck_command,
                     "cacheadmin_command": hdfs.cacheadmin_command}
            print(f"Hadoop {hdfs.version}: NameNode {hdfs.namenode_address}, "
                  f"WebHDFS {hdfs.webhdfs_url}")
            if with_yarn:
                # What an operator would write in [yarn]: the cluster's client configuration,
                # and its jars because this machine has no `yarn` command.
                yarn = {"hadoop_conf_dir": str(hdfs.conf_dir), "classpath": hdfs.client_classpath}
                print(f"YARN ResourceManager at {hdfs.rm_address} (web {hdfs.rm_web_url})")

        step(f"generating a {args.size_mb} MB Parquet dataset")
        source = root / "source"
        generate_dataset(source, args.size_mb)

        step("starting three clusters (alpha, beta, gamma) with zeroconf on loopback")
        discovery = {"zeroconf": True, "interfaces": ["127.0.0.1"], "sync_interval": 2}
        daemons: dict[str, DaemonProcess] = {}
        for name in ("alpha", "beta", "gamma"):
            home = root / name
            home.mkdir()
            sections = {"discovery": discovery, **({"store": store} if name == "gamma" and store else {}),
                        **({"yarn": yarn} if name == "gamma" and yarn else {})}
            daemon = DaemonProcess(home, daemon_config(**sections))
            daemon.init(name)
            stack.callback(daemon.stop)
            daemons[name] = daemon.start()
            print(f"{name}: cluster {daemon.cluster_id}, peer API {daemon.peer_url}")
        alpha, beta, gamma = daemons["alpha"], daemons["beta"], daemons["gamma"]
        write_job_spec(gamma.home / "jobs", args.max_rows, args.engine)

        step(f"alpha and beta publish {DATASET}@1")
        for daemon in (alpha, beta):
            print(daemon.cli("publish", str(source), "--name", DATASET, "--version", "1",
                             "--description", "Generated click-through features and labels",
                             "--tag", "demo", "--tag", "tabular").strip())

        step("gamma trusts alpha and beta, then finds them over zeroconf")
        for daemon in (alpha, beta):
            gamma.cli("trust", "add", daemon.cluster_id, "--name", daemon.home.name)
        wait_for(lambda: len(gamma.cli_json("search", "clicks")) >= 2, timeout=60,
                 what="gamma to hold both catalogs")
        print(gamma.cli("search", "clicks"))

        step(f"gamma fetches {DATASET} from every peer that has it")
        fetch_args = ["fetch", f"{alpha.cluster_id}/{DATASET}@1", "--timeout", "600"]
        if args.hdfs:
            fetch_args += ["--tier", args.tier]
        if gamma.cli_shown(*fetch_args) != 0:
            print("fetch failed", file=sys.stderr)
            return 1
        if args.hdfs:
            from p2pdata.hdfs.tiers import parse_fsck_blocks, storage_counts

            # Where HDFS put the blocks (fsck), e.g. cold-ec: erasure-coded, all on ARCHIVE.
            report = hdfs.fsck("/p2pdata")
            coded = "erasure-coded" if "erasure-coded: policy=" in report else "replicated"
            print(f"blocks in HDFS: {coded}, replicas by storage type "
                  f"{storage_counts(parse_fsck_blocks(report))}")

        step("training starts as soon as the data has landed")
        run_record = wait_for(lambda: _finished_run(gamma), timeout=args.train_timeout,
                              what="the training run to finish")
        print(f"run {run_record['id']} of {run_record['job']}: {run_record['state']}")
        application = run_record.get("engine_info") or {}
        if application.get("id"):
            print(f"YARN application {application['id']}: {application.get('state')}, "
                  f"tracking URL {application.get('url')}")
        metrics = _run_metrics(run_record)
        if metrics:
            print(f"model accuracy: {metrics.get('accuracy')}")

        step("what happened")
        print(gamma.cli("status"))
        print(f"status page: {gamma.cli('status', '--web').strip()}")
        if args.keep_running:
            print("Ctrl-C to stop the clusters and clean up")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        else:
            print("(the clusters stop now; run with --keep-running to keep the page up)")
        ok = run_record["state"] == "succeeded"
        print("\ndemo " + ("complete" if ok else "FAILED"))
        return 0 if ok else 1


def _finished_run(daemon: DaemonProcess) -> dict | None:
    runs = daemon.cli_json("runs")
    done = [run for run in runs if run["state"] not in ("queued", "running")]
    return done[0] if done else None


def _run_metrics(run_record: dict) -> dict | None:
    output = run_record.get("output_dir")
    path = Path(output) / "metrics.json" if output else None
    return json.loads(path.read_text()) if path and path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description="p2pdata in one command: three clusters on this machine.")
    parser.add_argument("--size-mb", type=int, default=200, help="size of the generated dataset")
    parser.add_argument("--hdfs", action="store_true", help="land into a real local HDFS")
    parser.add_argument("--tier", default="ssd",
                        help="storage tier with --hdfs (ssd, hot, cold, cold-ec, memory, ...)")
    parser.add_argument("--engine", choices=("local", "yarn"), default="local",
                        help="where training runs: local processes, or YARN (needs --hdfs)")
    parser.add_argument("--max-rows", type=int, default=20000, help="rows the example model trains on")
    parser.add_argument("--train-timeout", type=float, default=300)
    parser.add_argument("--keep-running", action="store_true", help="keep the clusters up until Ctrl-C")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    start = time.monotonic()
    args = parser.parse_args()
    if args.engine == "yarn" and not args.hdfs:
        parser.error("--engine yarn trains next to the data in HDFS: add --hdfs")
    try:
        code = run(args)
    except KeyboardInterrupt:
        code = 130
    print(f"(took {time.monotonic() - start:.0f} s)")
    sys.exit(code)


if __name__ == "__main__":
    main()
