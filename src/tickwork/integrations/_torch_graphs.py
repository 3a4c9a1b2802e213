"""CUDA graphs for :mod:`tickwork.integrations.torch`: n training steps per graph replay.

The recipe is PyTorch's "whole network capture" (torch.cuda.graphs docs): warm up on a side
stream, capture the steps into a :class:`torch.cuda.CUDAGraph` reading static input buffers, then
per call copy the next batches into those buffers and replay. One graph is captured per
(n, batch shapes) and replayed from then on.

The CUDA calls sit behind :class:`GraphBackend` so that everything around them (buffers, copies,
counting, fallback) is tested on a CPU with a stand-in; :func:`make_backend` is the one place that
picks the real one. NOT RUN ON A GPU: this machine has none; see docs/frameworks.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch

__all__ = ["CudaGraphBackend", "Event", "GraphBackend", "make_backend", "tree_copy", "tree_map"]

# torch leaves these constructors unannotated; these are the typed edges this module uses.
_new_stream: Callable[[torch.device], Any] = torch.cuda.Stream
_new_event: Callable[[], Any] = torch.cuda.Event


class Event(Protocol):
    def query(self) -> bool: ...

    def synchronize(self) -> None: ...


class GraphBackend(Protocol):
    """What the runner needs from CUDA to capture and replay graphs."""

    device: torch.device

    def side_stream(self) -> contextlib.AbstractContextManager[None]:
        """Run the warm-up on a side stream the current stream then waits for."""

    def capture(self, fn: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
        """Capture ``fn()`` (executing nothing); return (replay, the static outputs)."""

    def event(self) -> Event:
        """An event recorded now on the current stream."""


class CudaGraphBackend:
    """The real backend: torch.cuda streams, graphs and events on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @contextlib.contextmanager
    def side_stream(self) -> Iterator[None]:
        current = torch.cuda.current_stream(self.device)
        stream = _new_stream(self.device)
        stream.wait_stream(current)
        with torch.cuda.stream(stream):
            yield
        current.wait_stream(stream)

    def capture(self, fn: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(self.device), torch.cuda.graph(graph):
            outputs = fn()
        replay: Callable[[], None] = graph.replay
        return replay, outputs

    def event(self) -> Event:
        event = _new_event()
        event.record(torch.cuda.current_stream(self.device))
        recorded: Event = event
        return recorded


def make_backend(device: torch.device) -> GraphBackend:
    """The CUDA-graph backend for ``device``, or a ValueError saying why there is none."""
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(
            "mode='cuda_graph' needs a CUDA device and torch.cuda.is_available(); got "
            f"device={str(device)!r} (torch.cuda.is_available() is {torch.cuda.is_available()})"
        )
    return CudaGraphBackend(device)


def tree_map(fn: Callable[[torch.Tensor], Any], tree: Any) -> Any:
    """Apply ``fn`` to every tensor in nested tuples, lists and dicts; other leaves are kept."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {key: tree_map(fn, value) for key, value in tree.items()}
    if isinstance(tree, (tuple, list)):
        mapped = [tree_map(fn, item) for item in tree]
        if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # a namedtuple
            return type(tree)(*mapped)
        return type(tree)(mapped)
    return tree


def tree_copy(destination: Any, source: Any) -> None:
    """Copy every tensor of ``source`` into the same place in ``destination`` (same structure)."""
    if isinstance(destination, torch.Tensor):
        if not isinstance(source, torch.Tensor):
            raise TypeError(f"a batch changed structure: expected a tensor, got {source!r}")
        destination.copy_(source, non_blocking=True)
    elif isinstance(destination, dict):
        for key, value in destination.items():
            tree_copy(value, source[key])
    elif isinstance(destination, (tuple, list)):
        for dst, src in zip(destination, source, strict=True):
            tree_copy(dst, src)
