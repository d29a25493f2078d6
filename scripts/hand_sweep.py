"""The lecture's activation demo as one plain PyTorch script: the reference that a dllab sweep
(``dllab-train -m hydra/launcher=stacked experiment=activations data=circle,xor
seed=0,1,2,3,4``) is measured against in ``scripts/benchmark.py --cases sweeps``.

    .venv/bin/python scripts/hand_sweep.py --out /tmp/hand            # the 30 models
    .venv/bin/python scripts/hand_sweep.py --out /tmp/hand --seeds 1 --epochs 1

It trains the 30 models one after another, written top to bottom as a textbook would: for
each data set (circle, xor), activation (relu, tanh, sigmoid) and seed (0-4), the same sizes
as dllab's ``experiment=activations``: 1000 points of the Playground's set (dllab's own
generator, seeded by the seed; no noise, features x1 and x2, no standardisation, as
conf/_base/playground.yaml has it), 700 / 100 / 200 for training, validation and test (a
seeded permutation; dllab's split is stratified, of the same sizes), an MLP 2-8-8-2, plain SGD
at lr 0.03, batches of 10, 5 epochs, a validation pass after every epoch and a test at the
end. Each model writes one ``metrics.json`` (test accuracy and loss, validation per epoch)
into its own folder under ``--out``. Torch uses one thread. It prints its wall time after the
imports (the benchmark times the whole process, interpreter and imports included).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dllab.data.playground import GENERATORS  # numpy only: no torch, no Lightning

parser = argparse.ArgumentParser(description="The activation demo's 30 models, one after another, in plain PyTorch.")
parser.add_argument("--out", type=Path, required=True, help="one folder per model, each with its metrics.json")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. SEEDS-1 (default 5)")
parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
args = parser.parse_args()
started = time.perf_counter()

torch.set_num_threads(1)
device = torch.device(args.device)
n_samples, n_val, n_test, batch_size, lr, hidden_sizes = 1000, 100, 200, 10, 0.03, [8, 8]
activations = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
loss_fn = nn.CrossEntropyLoss()


def evaluate(model, x, y):
    """Mean loss and accuracy of the model on a whole split, in one batch."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = loss_fn(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    model.train()
    return loss, acc


for data_name in ("circle", "xor"):
    for activation in activations:
        for seed in range(args.seeds):
            # the data: 1000 points, labels -1/+1 as classes 0/1, split by a seeded permutation
            rng = np.random.default_rng(seed)
            points, labels = GENERATORS[data_name](n_samples, 0.0, rng)
            x = torch.tensor(points, dtype=torch.float32, device=device)
            y = torch.tensor(labels > 0, dtype=torch.int64, device=device)
            order = torch.from_numpy(rng.permutation(n_samples)).to(device)
            test_index, val_index, train_index = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
            x_train, y_train = x[train_index], y[train_index]
            x_val, y_val = x[val_index], y[val_index]
            x_test, y_test = x[test_index], y[test_index]

            # the model and its optimizer
            torch.manual_seed(seed)
            act = activations[activation]
            h1, h2 = hidden_sizes
            model = nn.Sequential(nn.Linear(2, h1), act(), nn.Linear(h1, h2), act(), nn.Linear(h2, 2)).to(device)
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)

            # training, with a validation pass after every epoch
            val = []
            for epoch in range(args.epochs):
                shuffled = torch.randperm(len(x_train), device=device)
                total = 0.0
                for first in range(0, len(shuffled), batch_size):
                    batch = shuffled[first : first + batch_size]
                    loss = loss_fn(model(x_train[batch]), y_train[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(batch)
                val_loss, val_acc = evaluate(model, x_val, y_val)
                val.append({"epoch": epoch, "train_loss": total / len(x_train), "loss": val_loss, "acc": val_acc})

            # the test, and the model's metrics file
            test_loss, test_acc = evaluate(model, x_test, y_test)
            job = f"{data_name}_{activation}_seed{seed}"
            (args.out / job).mkdir(parents=True, exist_ok=True)
            metrics = {
                "data": data_name,
                "activation": activation,
                "seed": seed,
                "settings": {
                    "n_samples": n_samples,
                    "sizes": {"train": len(x_train), "val": len(x_val), "test": len(x_test)},
                    "hidden_sizes": hidden_sizes,
                    "lr": lr,
                    "batch_size": batch_size,
                    "epochs": args.epochs,
                },
                "test": {"loss": test_loss, "acc": test_acc},
                "val": val,
            }
            (args.out / job / "metrics.json").write_text(json.dumps(metrics, indent=1))
            print(f"{job}: val acc {val[-1]['acc']:.3f}, test acc {test_acc:.3f}", flush=True)

models = 2 * len(activations) * args.seeds
print(f"hand sweep: {models} models in {time.perf_counter() - started:.2f} s wall (after the imports)")
