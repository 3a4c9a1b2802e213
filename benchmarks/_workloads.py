"""The seed's workload for the framework benchmarks: an MLP 784-64-64-10 (ReLU), SGD (lr 1e-3),
batch 64, random data (256 distinct batches, cycled), in JAX and in PyTorch.

Frameworks are imported inside the functions, so importing this module imports none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

BATCH, INPUTS, CLASSES, HIDDEN, LR = 64, 784, 10, 64, 1e-3
DISTINCT_BATCHES = 256


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((DISTINCT_BATCHES * BATCH, INPUTS), dtype=np.float32)
    y = rng.integers(0, CLASSES, DISTINCT_BATCHES * BATCH).astype(np.int32)
    return x, y


def steps_per_second(runner: Any, seconds: float) -> float:
    """Steps/s of ``runner`` (``run()``, ``sync()``, ``counter()``, as tickwork's SpeRunner) over
    about ``seconds``, after one untimed call."""
    runner.run()
    runner.sync()
    first, started = runner.counter(), time.perf_counter()
    while time.perf_counter() - started < seconds:
        runner.run()
    runner.sync()
    return float((runner.counter() - first) / (time.perf_counter() - started))


def numpy_batches() -> list[tuple[np.ndarray, np.ndarray]]:
    x, y = data()
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]


def jax_mlp() -> tuple[Callable[[], Any], Callable[[Any, Any], tuple[Any, Any]]]:
    """(init, step): fresh parameters, and a pure step (params, batch) -> (params, loss)."""
    import jax
    import jax.numpy as jnp

    def init() -> list[dict[str, Any]]:
        keys = jax.random.split(jax.random.key(0), 3)
        sizes = [(INPUTS, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, CLASSES)]
        return [
            {"w": jax.random.normal(k, s) * jnp.sqrt(2.0 / s[0]), "b": jnp.zeros(s[1])}
            for k, s in zip(keys, sizes, strict=True)
        ]

    def loss_fn(params: list[dict[str, Any]], x: Any, y: Any) -> Any:
        h = x
        for layer in params[:-1]:
            h = jax.nn.relu(h @ layer["w"] + layer["b"])
        logits = h @ params[-1]["w"] + params[-1]["b"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    def step(params: Any, batch: Any) -> tuple[Any, Any]:
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        return jax.tree.map(lambda p, g: p - LR * g, params, grads), loss

    return init, step


def torch_batches() -> list[tuple[Any, Any]]:
    import torch

    x, y = data()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    return [(tx[i : i + BATCH], ty[i : i + BATCH]) for i in range(0, len(tx), BATCH)]


def torch_model() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(INPUTS, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, CLASSES),
    )


def torch_imperative_step() -> Callable[[Any], Any]:
    """The usual step: zero_grad, forward, backward(), optimizer.step() (graph breaks)."""
    import torch

    net = torch_model()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)

    def step(batch: Any) -> Any:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(batch[0]), batch[1])
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves backward() unannotated
        optimizer.step()
        return loss.detach()

    return step


def torch_functional_step() -> Callable[[Any], Any]:
    """A step without graph breaks (torch.func), which torch.compile turns into one graph."""
    import torch
    from torch.func import functional_call, grad_and_value

    net = torch_model()
    params = {k: v.detach().clone() for k, v in net.named_parameters()}

    def loss_fn(p: dict[str, Any], bx: Any, by: Any) -> Any:
        return torch.nn.functional.cross_entropy(functional_call(net, p, (bx,)), by)

    grad_fn = grad_and_value(loss_fn)

    def step(batch: Any) -> Any:
        grads, loss = grad_fn(params, *batch)
        with torch.no_grad():
            for key in params:
                params[key].sub_(LR * grads[key])
        return loss

    return step
