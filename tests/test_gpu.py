"""GPU checks, run by scripts/gpu_check.sh on a machine with an NVIDIA GPU. They are skipped
only where no CUDA GPU exists (every machine without one, CI included)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from dllab.data.datamodule import InMemoryDataModule
from dllab.data.playground import Playground
from dllab.data.sklearn_sets import SklearnSet
from dllab.training.module import ClassificationModule
from dllab.training.reference_loop import train_reference
from tests.conftest import bare_trainer, mlp, run_cli, run_dirs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def gpu_trainer(**kwargs) -> L.Trainer:
    return bare_trainer(**({"accelerator": "gpu", "devices": 1} | kwargs))


def test_splits_live_on_the_gpu_once() -> None:
    dm = InMemoryDataModule(SklearnSet("digits"), batch_size=32)
    module = ClassificationModule(64, 10, net=mlp([32]))
    trainer = gpu_trainer(max_epochs=2, precision="bf16-mixed")
    trainer.fit(module, dm)
    x, _ = dm._tensors["train"]
    assert x.device.type == "cuda"
    loader = dm.train_dataloader()
    epochs = [next(iter(loader)) for _ in range(2)]
    assert epochs[0].x.data_ptr() == epochs[1].x.data_ptr() == x.data_ptr()  # one copy on the GPU, not per epoch
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert trainer.callback_metrics["val/acc"] > 0.5


def test_fast_path_equals_a_plain_loop_on_the_gpu() -> None:
    dm = InMemoryDataModule(Playground("circle", n_samples=203), batch_size=10, seed=0)
    dm.setup()
    torch.manual_seed(0)
    module = ClassificationModule(2, 2, net=mlp([16]), optimizer={"_target_": "torch.optim.SGD", "lr": 0.05})
    torch.manual_seed(0)
    reference = ClassificationModule(2, 2, net=mlp([16])).cuda()
    gpu_trainer(max_epochs=1, limit_val_batches=0).fit(module, dm)
    x, y = (t.cuda() for t in dm._tensors["train"])
    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    train_reference(reference.net, F.cross_entropy, opt, x, y, [dm.train_dataloader().order(0).cuda()], 10)
    got = torch.cat([p.detach().flatten().cpu() for p in module.parameters()])
    want = torch.cat([p.detach().flatten().cpu() for p in reference.parameters()])
    assert torch.allclose(got, want, atol=1e-5)


def test_dllab_train_on_the_gpu_with_bf16_and_augmentation(tmp_path: Path) -> None:
    result = run_cli(
        "dllab-train",
        "trainer=gpu",
        "trainer.precision=bf16-mixed",
        "trainer.max_epochs=5",
        "augmentation=light",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dirs(tmp_path)[0] / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test"]["test/acc"] > 0.8
