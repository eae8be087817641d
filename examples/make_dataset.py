"""Make a small, learnable binary classification dataset as Parquet.

    python examples/make_dataset.py OUT_DIR [--rows N]

Features f0..f{k-1} are standard normal; label is 1 when a fixed linear combination of
them is positive, so a linear model can reach close to 100% accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_classification(out_dir: Path, rows: int = 2000, features: int = 4, files: int = 2,
                        seed: int = 0) -> list[Path]:
    """Write `files` Parquet files with `rows` rows in all; returns their paths."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype("float32")
    weights = np.linspace(1.0, -1.0, features) + 0.5
    label = (x @ weights > 0).astype("int64")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for part, index in enumerate(np.array_split(np.arange(rows), files)):
        columns = {f"f{i}": x[index, i] for i in range(features)}
        columns["label"] = label[index]
        path = out_dir / f"part-{part:05d}.parquet"
        pq.write_table(pa.table(columns), path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--features", type=int, default=4)
    args = parser.parse_args()
    for path in make_classification(args.out_dir, args.rows, args.features):
        print(path)


if __name__ == "__main__":
    main()
