# %% [markdown]
# # Reading a landed dataset, notebook style
#
# Open it in Jupyter or VS Code (the `# %%` lines are cells), or run it as a script:
#
#     P2PDATA_HOME=~/p2pdata python examples/read_landed.py taxi-trips@2024.03 --label tip
#
# The daemon of that home must be running; `--fetch` fetches the dataset first if it has
# not landed here yet. Needs the `pandas` extra; the last cell needs the `torch` extra
# (`pip install 'p2pdata[pandas,torch]'`) and is skipped without it.

# %%
from __future__ import annotations

import argparse
import sys

import pandas as pd

import p2pdata

parser = argparse.ArgumentParser(description="Read a landed dataset with pandas and torch.")
parser.add_argument("ref", nargs="?", default="taxi-trips@2024.03", help="NAME[@VERSION] or PUBLISHER/NAME@VERSION")
parser.add_argument("--label", default="label", help="The column to predict.")
parser.add_argument("--features", nargs="*", help="Numeric feature columns (default: every other numeric one).")
parser.add_argument("--fetch", action="store_true", help="Fetch the dataset first if it has not landed.")
args = parser.parse_args([] if "ipykernel" in sys.modules else None)

# %% [markdown]
# `p2pdata.load` asks the local daemon where the dataset landed (a local store or HDFS)
# and gives a `pyarrow.dataset.Dataset`: nothing is read yet, and Hive partition folders
# (`date=2024-03-01/`) are columns.

# %%
trips = p2pdata.load(args.ref, fetch=args.fetch)
print(trips.schema)
print(f"{trips.count_rows()} rows in {len(trips.files)} files")

# %% [markdown]
# ## pandas
# Either from the dataset, or straight from the `p2pdata://` URL that fsspec knows.

# %%
frame = p2pdata.to_pandas(trips)
print(frame.describe())
same = pd.read_parquet(f"p2pdata://{args.ref}")
assert len(same) == len(frame)

# %% [markdown]
# ## torch
# `to_torch` streams batches file by file (each DataLoader worker reads its own files), so
# a dataset larger than memory trains too.

# %%
numeric = [name for name, kind in frame.dtypes.items() if kind.kind in "fiub" and name != args.label]
features = args.features or numeric
try:
    import torch
except ImportError:
    print("torch is not installed: pip install 'p2pdata[torch]' for this cell")
else:
    batches = torch.utils.data.DataLoader(
        p2pdata.to_torch(trips, args.label, features=features, batch_size=256), batch_size=None
    )
    model = torch.nn.Linear(len(features), 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(3):
        for x, y in batches:
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y.float())
            loss.backward()
            optimiser.step()
        print(f"epoch {epoch}: loss {loss.item():.4f}")
