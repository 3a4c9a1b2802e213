"""A small numpy classifier for the demo: a two-layer MLP on Gaussian blobs, trained with SGD.

Real training (forward, backward, update), small enough to run in seconds on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Blobs", "Mlp"]

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Blobs:
    """A 10-class problem: one Gaussian blob per class in ``features`` dimensions."""

    centers: Array
    noise: float

    @classmethod
    def make(cls, seed: int, classes: int = 10, features: int = 32, noise: float = 1.6) -> Blobs:
        rng = np.random.default_rng(seed)
        centers = rng.normal(0.0, 1.0, (classes, features)).astype(np.float32)
        return cls(centers=centers, noise=noise)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[Array, npt.NDArray[np.int64]]:
        labels = rng.integers(0, len(self.centers), size)
        noise = rng.normal(0.0, self.noise, (size, self.centers.shape[1])).astype(np.float32)
        return self.centers[labels] + noise, labels


class Mlp:
    """features -> hidden (ReLU) -> classes, softmax cross-entropy, plain SGD."""

    def __init__(self, features: int, hidden: int, classes: int, seed: int, lr: float) -> None:
        rng = np.random.default_rng(seed + 1)
        self.w1 = (rng.normal(0, 1, (features, hidden)) * np.sqrt(2 / features)).astype(np.float32)
        self.b1 = np.zeros(hidden, np.float32)
        self.w2 = (rng.normal(0, 1, (hidden, classes)) * np.sqrt(1 / hidden)).astype(np.float32)
        self.b2 = np.zeros(classes, np.float32)
        self.lr = lr

    def logits(self, x: Array) -> tuple[Array, Array]:
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        return hidden, hidden @ self.w2 + self.b2

    @staticmethod
    def _softmax(logits: Array) -> Array:
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs: Array = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def loss(self, x: Array, y: npt.NDArray[np.int64]) -> float:
        """Mean cross-entropy on (x, y), without training."""
        probs = self._softmax(self.logits(x)[1])
        return float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())

    def train_step(self, x: Array, y: npt.NDArray[np.int64]) -> float:
        """One SGD step; returns the batch's mean cross-entropy before the update."""
        hidden, logits = self.logits(x)
        probs = self._softmax(logits)
        n = len(y)
        loss = float(-np.log(probs[np.arange(n), y] + 1e-12).mean())
        grad_logits = probs
        grad_logits[np.arange(n), y] -= 1.0
        grad_logits /= n
        grad_w2 = hidden.T @ grad_logits
        grad_hidden = grad_logits @ self.w2.T
        grad_hidden[hidden <= 0] = 0.0
        grad_w1 = x.T @ grad_hidden
        self.w2 -= self.lr * grad_w2
        self.b2 -= self.lr * grad_logits.sum(axis=0)
        self.w1 -= self.lr * grad_w1
        self.b1 -= self.lr * grad_hidden.sum(axis=0)
        return loss

    def accuracy(self, x: Array, y: npt.NDArray[np.int64]) -> float:
        return float((self.logits(x)[1].argmax(axis=1) == y).mean())
