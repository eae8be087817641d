"""p2pdata: share curated datasets between clusters peer to peer, land them in HDFS, train.

In a notebook::

    import p2pdata
    trips = p2pdata.load("taxi-trips@2024.03")          # a pyarrow Dataset (fetch=True to fetch first)
    df = p2pdata.to_pandas(trips)                        # or pd.read_parquet("p2pdata://taxi-trips@2024.03")
    batches = p2pdata.to_torch(trips, label="tip")       # a torch IterableDataset
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Imported on first use, so that `import p2pdata` (and every CLI start) stays light.
_LAZY = {
    "load": "p2pdata.loading",
    "open_dataset": "p2pdata.training.data",
    "list_files": "p2pdata.training.data",
    "to_numpy": "p2pdata.training.data",
    "to_pandas": "p2pdata.training.data",
    "to_tf_dataset": "p2pdata.training.data",
    "to_torch": "p2pdata.training.data",
    "iter_batches": "p2pdata.training.data",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'p2pdata' has no attribute {name!r}")
