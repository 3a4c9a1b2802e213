"""Reading the step a checkpoint was saved at from its name. Pure functions.

Frameworks name checkpoints after the step in many ways: ``ckpt-5`` (TensorFlow), ``5`` and
``checkpoint_5`` (Orbax), ``checkpoint-500`` (Hugging Face), ``epoch=3-step=500.ckpt``
(Lightning), ``model_step_100.pt``, ``ckpt_42.pt``, ``weights.05-0.32.weights.h5`` (Keras'
``{epoch:02d}-{val_loss:.2f}``). The rules, in order:

1. a number after the word ``step`` (``step=500``, ``step_100``, ``step-7``, ``step12``);
2. else a number after the word ``epoch`` (``epoch=3``);
3. else the last integer in the name once decimal numbers (metric values such as ``0.32``)
   are taken out.

A name with no number has no step, and a file layout does not follow it (``last.ckpt`` and
``best.keras`` are rewritten in place under one name, so they cannot be followed by step).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["epoch_from_name", "split_suffix", "step_from_name", "trailing_step"]

# The word must not continue a longer word ("laststep_5" is not a step).
_STEP = re.compile(r"(?<![A-Za-z])step[=_-]?(\d+)", re.IGNORECASE)
_EPOCH = re.compile(r"(?<![A-Za-z])epoch[=_-]?(\d+)", re.IGNORECASE)
# Decimal numbers in names are metric values (val_loss=0.32, 1e-3), never the step.
_DECIMAL = re.compile(r"\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+", re.IGNORECASE)
_INTEGER = re.compile(r"\d+")
_TRAILING = re.compile(r"(?:^|[-_])(\d+)$")


def step_from_name(stem: str) -> int | None:
    """The step a checkpoint name carries (see the module docs), or None.

    ``stem`` is the name without its extension.
    """
    found = _STEP.search(stem)
    if found:
        return int(found.group(1))
    found = _EPOCH.search(stem)
    if found:
        return int(found.group(1))
    integers = _INTEGER.findall(_DECIMAL.sub(" ", stem))
    return int(integers[-1]) if integers else None


def epoch_from_name(stem: str) -> int | None:
    """The epoch a name carries (``epoch=3``), or None."""
    found = _EPOCH.search(stem)
    return int(found.group(1)) if found else None


def trailing_step(name: str) -> int | None:
    """The number at the end of a name after ``-`` or ``_`` (``ckpt-5`` -> 5), or the whole name
    when it is a number (``"12"`` -> 12); None otherwise."""
    found = _TRAILING.search(name)
    return int(found.group(1)) if found else None


def split_suffix(name: str, suffixes: Iterable[str]) -> tuple[str, str] | None:
    """``(stem, suffix)`` for the longest of ``suffixes`` that ``name`` ends with (case ignored),
    or None. The stem must not be empty."""
    lowered = name.lower()
    best: str | None = None
    for suffix in suffixes:
        fits = lowered.endswith(suffix) and len(name) > len(suffix)
        if fits and (best is None or len(suffix) > len(best)):
            best = suffix
    if best is None:
        return None
    return name[: -len(best)], name[-len(best) :]
