"""The PyTorch part of the lecture as one runnable walk-through (docs/lab.md, last section).

    python scripts/pytorch_basics.py

Tensors, devices, autograd, how ``.grad`` accumulates, gradient accumulation over
micro-batches, and one hand-written SGD step. Everything runs on the CPU with a fixed seed,
so the printed values are the same on every run; each value is printed as
``label: value`` (tests/test_lab.py reads them back).
"""

from __future__ import annotations

import torch
from torch import nn


def show(label: str, value: object) -> None:
    """One labelled line; tensors of one element print as plain numbers."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = round(value.item(), 6)
    elif isinstance(value, torch.Tensor):
        value = value.tolist()
    print(f"{label}: {value}")


def tensors() -> None:
    print("== tensors")
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # from a nested list
    show("a.shape", tuple(a.shape))  # (rows, columns)
    show("a.dtype", a.dtype)  # Python floats become float32
    show("int tensor dtype", torch.tensor([1, 2, 3]).dtype)  # Python ints become int64
    show("zeros(2, 3) sum", torch.zeros(2, 3).sum())
    show("arange(6).view(2, 3)", torch.arange(6).view(2, 3))  # the same 6 numbers, seen as 2x3
    # Broadcasting: a (3,) row is added to each of the 2 rows of a; a (2, 1) column to each column.
    row = torch.tensor([10.0, 20.0, 30.0])
    column = torch.tensor([[100.0], [200.0]])
    show("a + row", a + row)
    show("a + column", a + column)
    show("(a + row + column).shape", tuple((a + row + column).shape))
    show("a @ a.T", a @ a.T)  # matrix product: (2, 3) @ (3, 2) -> (2, 2)
    show("a.to(torch.float64).dtype", a.to(torch.float64).dtype)


def pick_device() -> torch.device:
    """A CUDA GPU if there is one, else Apple's MPS, else the CPU (dllab's trainer=default does the same)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def devices() -> None:
    print("== devices")
    show("device this machine would use", pick_device().type)
    # The rest of this script stays on the CPU so that every machine prints the same numbers.
    device = torch.device("cpu")
    x = torch.ones(3).to(device)  # .to(device) returns a copy on that device (or x itself if already there)
    show("x.device", x.device.type)
    # A model moves the same way: model.to(device) moves its parameters. Inputs and parameters
    # must be on the same device, or the forward pass raises an error.
    model = nn.Linear(3, 1).to(device)
    show("model parameter device", next(model.parameters()).device.type)


def autograd() -> None:
    print("== autograd")
    w = torch.tensor(3.0, requires_grad=True)  # a leaf tensor: operations on it are recorded
    x = torch.tensor(2.0)  # no requires_grad: a constant for autograd
    loss = w * w * x  # loss = w^2 x = 18, so d loss / d w = 2 w x = 12
    loss.backward()  # fills w.grad
    show("loss", loss)
    show("d loss / d w (autograd)", w.grad)
    show("d loss / d w (by hand, 2*w*x)", 2 * w.detach() * x)
    show("x.grad (no requires_grad)", x.grad)


def accumulation_of_grad() -> None:
    print("== .grad accumulates")
    w = torch.tensor(1.0, requires_grad=True)
    (2 * w).backward()  # d(2w)/dw = 2
    show("grad after one backward call", w.grad)
    (2 * w).backward()  # backward ADDS to .grad: 2 + 2
    show("grad after two backward calls", w.grad)
    assert w.grad is not None
    w.grad.zero_()  # what optimizer.zero_grad() does for every parameter (it sets them to None by default)
    show("grad after zero_()", w.grad)
    (2 * w).backward()
    show("grad after zero_() and one more backward", w.grad)

    model = nn.Linear(2, 1)
    x = torch.tensor([[1.0, 2.0]])
    model(x).sum().backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()  # set_to_none=True: the gradients are gone, not zeros
    show("model.weight.grad after optimizer.zero_grad()", model.weight.grad)


def accumulated_micro_batches() -> None:
    """k micro-batches of size b, each loss scaled by 1/k, give the gradient of one batch of k*b.

    The loss is a mean over the batch; the mean over k*b samples is the mean of the k
    micro-batch means, so scaling each micro-batch loss by 1/k before backward and adding the
    gradients up (which .grad does by itself) gives the large batch's gradient exactly (up to
    float rounding). This is what ``trainer.accumulate_grad_batches=k`` does."""
    print("== accumulated gradients")
    torch.manual_seed(0)
    k, b = 4, 8
    x = torch.randn(k * b, 5)
    y = torch.randint(0, 3, (k * b,))
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    loss_fn = nn.CrossEntropyLoss()  # a mean over the batch

    model.zero_grad()
    loss_fn(model(x), y).backward()  # one batch of 32
    large = [p.grad.clone() for p in model.parameters() if p.grad is not None]

    model.zero_grad()
    for i in range(k):  # 4 micro-batches of 8, no zero_grad in between
        part = slice(i * b, (i + 1) * b)
        (loss_fn(model(x[part]), y[part]) / k).backward()
    accumulated = [p.grad.clone() for p in model.parameters() if p.grad is not None]

    difference = max((g1 - g2).abs().max().item() for g1, g2 in zip(large, accumulated, strict=True))
    show("micro-batches k", k)
    show("micro-batch size b", b)
    show("large batch size k*b", k * b)
    print(f"accumulated vs large batch, max abs difference: {difference:.3g}")

    model.zero_grad()  # without the 1/k the gradient is k times too large
    for i in range(k):
        part = slice(i * b, (i + 1) * b)
        loss_fn(model(x[part]), y[part]).backward()
    unscaled = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    ratio = (unscaled[0].norm() / large[0].norm()).item()
    print(f"without 1/k, gradient norm / large batch's: {ratio:.4f}")


def sgd_step() -> None:
    """One step of plain gradient descent by hand, then the same step with torch.optim.SGD."""
    print("== one SGD step by hand")
    x = torch.tensor([1.0, 2.0, 3.0])
    y = torch.tensor([5.0, 7.0, 9.0])  # y = 2x + 3
    w = torch.tensor(0.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    lr = 0.1
    loss = ((w * x + b - y) ** 2).mean()  # mean squared error
    loss.backward()
    show("loss before the step", loss)
    show("grad w", w.grad)  # d/dw mean((wx+b-y)^2) = mean(2 (wx+b-y) x) = -2 * 46/3
    show("grad b", b.grad)  # mean(2 (wx+b-y)) = -2 * 7
    with torch.no_grad():  # the update itself must not be recorded by autograd
        w -= lr * w.grad  # type: ignore[operator]
        b -= lr * b.grad  # type: ignore[operator]
    w.grad = b.grad = None  # ready for the next step (what zero_grad does)
    show("w after one step", w)
    show("b after one step", b)
    show("loss after the step", ((w * x + b - y) ** 2).mean())

    w2 = torch.tensor(0.0, requires_grad=True)
    b2 = torch.tensor(0.0, requires_grad=True)
    optimizer = torch.optim.SGD([w2, b2], lr=lr)
    optimizer.zero_grad()
    ((w2 * x + b2 - y) ** 2).mean().backward()
    optimizer.step()
    show("w after torch.optim.SGD step", w2)
    show("b after torch.optim.SGD step", b2)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tensors()
    devices()
    autograd()
    accumulation_of_grad()
    accumulated_micro_batches()
    sgd_step()


if __name__ == "__main__":
    main()
