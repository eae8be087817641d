"""Train a small Keras classifier on a landed Parquet dataset, on one worker or several.

Run by the p2pdata launcher (framework = "tensorflow"), it reads P2PDATA_DATASET_URI,
P2PDATA_OUTPUT_DIR and TF_CONFIG; by hand, pass --data and --output. With more than one
worker in TF_CONFIG it trains under MultiWorkerMirroredStrategy with a custom training
loop (Keras 3's model.fit does not work under that strategy). The chief (worker 0) saves
the model as OUTPUT/model.keras and writes OUTPUT/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf
from tensorflow import keras

from p2pdata.training import open_dataset, to_numpy, worker_started


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("P2PDATA_DATASET_URI"),
                        help="dataset URI (default: $P2PDATA_DATASET_URI)")
    parser.add_argument("--output", default=os.environ.get("P2PDATA_OUTPUT_DIR", "output"),
                        help="output directory (default: $P2PDATA_OUTPUT_DIR)")
    parser.add_argument("--label", default="label")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="per worker")
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--max-rows", type=int, default=None, help="train on the first N rows only")
    args = parser.parse_args()
    if not args.data:
        parser.error("no dataset: pass --data or set P2PDATA_DATASET_URI")
    return args


def cluster() -> tuple[int, int]:
    """(number of workers, this worker's index) from TF_CONFIG."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = len(config.get("cluster", {}).get("worker", [])) or 1
    return workers, int(config.get("task", {}).get("index", 0))


def main() -> None:
    args = parse_args()
    workers, index = cluster()
    if workers > 1:
        # Blocks until every peer is up: only then does this worker count as started.
        strategy: tf.distribute.Strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    worker_started()

    x, y = to_numpy(open_dataset(args.data), args.label, max_rows=args.max_rows)
    global_batch = args.batch_size * workers
    data = (tf.data.Dataset.from_tensor_slices((x, y.astype("float32")))
            .shuffle(len(x), seed=0).batch(global_batch))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist_data = strategy.experimental_distribute_dataset(data.with_options(options))

    with strategy.scope():
        model = keras.Sequential([
            keras.Input(shape=(x.shape[1],)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1),
        ])
        optimizer = keras.optimizers.Adam(args.learning_rate)

    def step(features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.squeeze(model(features, training=True), axis=1)
            per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
            # Scaled by the global batch: the optimizer sums gradients across replicas.
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        losses = strategy.run(step, args=(features, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    started = time.monotonic()
    loss = float("nan")
    for epoch in range(args.epochs):
        total, batches = 0.0, 0
        for features, labels in dist_data:
            total += float(train_step(features, labels))
            batches += 1
        loss = total / max(batches, 1)
        print(f"worker {index}: epoch {epoch + 1}/{args.epochs} loss {loss:.4f}", flush=True)

    logits = model(x, training=False).numpy().ravel()
    accuracy = float(((logits > 0).astype("int64") == y).mean())
    print(f"worker {index}: accuracy {accuracy:.4f}", flush=True)
    if index == 0:
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        model.save(output / "model.keras")
        metrics = {"accuracy": accuracy, "loss": loss, "epochs": args.epochs,
                   "rows": len(x), "workers": workers,
                   "seconds": round(time.monotonic() - started, 3)}
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
