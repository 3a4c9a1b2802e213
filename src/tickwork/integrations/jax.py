"""JAX: run n training steps in one jitted call (``lax.scan`` over stacked batches).

A host-side loop around a jitted single step pays a dispatch, a host round-trip and a launch per
step; scanning the step inside one compiled call pays them once per ``n`` steps (keras PR #23527
measured 1.1-1.25x for the host loop against far more for ``lax.scan`` on GPU). This module is the
``lax.scan`` version for your own training loop::

    from tickwork.integrations.jax import MultiStepRunner

    def train_step(state, batch):           # pure: (state, batch) -> (state, aux)
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    runner = MultiStepRunner(train_step, (params, opt_state), batches, max_spe=64)
    tuner = StepsPerExecutionTuner(runner.counter, runner.spe, candidates=runner.candidates)
    while runner.run():                     # each call runs int(runner.spe) steps
        ...
    params, opt_state = runner.state

Compilation: each distinct ``n`` is one compilation (the step is traced once whatever ``n`` is,
because ``lax.scan`` does not unroll it, unlike keras #20411), so the runner compiles only the
powers of two up to ``max_spe`` (:attr:`MultiStepRunner.candidates`) and runs any other ``n`` as
several calls of those sizes (13 = 8 + 4 + 1). Every compilation is timed and kept in
:attr:`MultiStepRunner.compile_log`; :meth:`MultiStepRunner.precompile` pays them before training.
A batch of a new shape (a short last batch) is a new compilation too: keep batch shapes fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._clock import Clock
from .._public import publish as _publish
from .._tuning._spe import StepsPerExecution
from .._validate import check_int
from ._multistep import CompileRecord, RunnerBase, decompose, take

__all__ = ["MultiStepRunner", "StepFn"]

logger = logging.getLogger(__name__)

StepFn = Callable[[Any, Any], tuple[Any, Any]]
"""A pure training step: ``step_fn(state, batch) -> (new_state, aux)``; ``aux`` is any pytree of
arrays (the loss, metrics) or None."""

_Executable = Callable[[Any, Any], tuple[Any, Any, Any]]
_Key = tuple[Any, tuple[tuple[tuple[int, ...], Any], ...]]  # (treedef, ((shape, dtype), ...))

# JAX leaves these unannotated; these are the typed edges this module uses them through.
_shape_dtype: Callable[..., Any] = jax.ShapeDtypeStruct
_block_until_ready: Callable[[Any], Any] = jax.block_until_ready


def _leaf_key(leaf: Any) -> tuple[tuple[int, ...], Any]:
    shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
    if shape is None or dtype is None:
        return tuple(np.shape(leaf)), jnp.result_type(leaf)
    return tuple(shape), dtype


def _batch_key(batch: Any) -> _Key:
    """What a compiled call depends on: the batch's structure, shapes and dtypes (cheap)."""
    leaves, treedef = jax.tree.flatten(batch)
    return treedef, tuple(_leaf_key(leaf) for leaf in leaves)


def _spec(key: _Key, size: int | None) -> Any:
    """ShapeDtypeStructs for one batch (``size`` None) or ``size`` stacked batches."""
    treedef, leaves = key
    lead = () if size is None else (size,)
    return jax.tree.unflatten(
        treedef, [_shape_dtype((*lead, *shape), dtype) for shape, dtype in leaves]
    )


def _describe(key: _Key) -> str:
    treedef, leaves = key
    shapes = ", ".join(f"{np.dtype(dtype).name}{list(shape)}" for shape, dtype in leaves)
    return f"{treedef} ({shapes})"


def _stack(batches: Sequence[Any]) -> Any:
    def stack(*leaves: Any) -> Any:
        if all(isinstance(leaf, np.ndarray) for leaf in leaves):
            return np.stack(leaves)  # stays on the host; transferred once with the call
        return jnp.stack(leaves)

    return jax.tree.map(stack, *batches)


class MultiStepRunner(RunnerBase[Any]):
    """Runs ``int(spe)`` steps of ``step_fn`` per :meth:`run`, in compiled calls of ``candidates``.

    ``batches`` is an iterable of single batches (pytrees of NumPy or JAX arrays of fixed
    shapes); the runner stacks the next ``n`` of them along a new leading axis and scans the step
    over them. ``state`` is the initial training state (any pytree); :attr:`state` is the latest.

    The tuner's contract: :meth:`counter` (steps completed), :attr:`spe` (the holder read at each
    call; pass a :class:`tickwork.StepsPerExecution` to share one), :attr:`candidates` (the
    powers of two up to ``max_spe``) and :attr:`compile_log` (what each compilation cost).

    ``donate_state`` donates the state buffers to each call (no copy of the parameters); the
    default donates except on the CPU backend, which cannot use donated buffers. With donation a
    state you read from :attr:`state` is invalid once the next call starts. ``unroll`` is passed
    to ``lax.scan`` (more unrolling: faster steps, longer compiles). ``max_in_flight`` bounds how
    many calls may be queued on the device before :meth:`run` waits (0: wait for each call).
    """

    def __init__(
        self,
        step_fn: StepFn,
        state: Any,
        batches: Iterable[Any],
        *,
        max_spe: int = 64,
        spe: int | StepsPerExecution = 1,
        donate_state: bool | None = None,
        unroll: int = 1,
        max_in_flight: int = 2,
        clock: Clock | None = None,
    ) -> None:
        if not callable(step_fn):
            raise TypeError(
                f"'step_fn' must be a callable (state, batch) -> (state, aux); got {step_fn!r}"
            )
        super().__init__(
            batches,
            max_spe=max_spe,
            spe=spe,
            max_in_flight=max_in_flight,
            clock=clock,
            ready=lambda done: bool(done.is_ready()),
            wait=_block_until_ready,
        )
        self._step_fn = step_fn
        self._state = state
        if donate_state is None:
            donate_state = jax.default_backend() != "cpu"
        elif not isinstance(donate_state, bool):
            raise TypeError(f"'donate_state' must be None or a bool; got {donate_state!r}")
        self._donate = donate_state
        self._unroll = check_int("unroll", unroll, minimum=1)
        self._executables: dict[tuple[int, _Key], _Executable] = {}

    @property
    def state(self) -> Any:
        """The training state after the latest call (arrays may still be computing)."""
        return self._state

    def run(self, max_steps: int | None = None) -> int:
        """Run the next ``int(spe)`` steps (at most ``max_steps``); return how many ran.

        Fewer run when ``batches`` runs out; 0 means it has. JAX dispatches asynchronously: the
        runner waits only when more than ``max_in_flight`` calls are queued, and
        :meth:`counter` counts a call's steps once it has finished.
        """
        batches = self._steps_wanted(max_steps)
        ran = 0
        for key, group in self._same_shape_runs(batches):
            for size in decompose(len(group), self._candidates):
                chunk = group[:size]
                del group[:size]
                executable = self._executable(size, key)
                data = chunk[0] if size == 1 else _stack(chunk)
                self._state, self._output, done = executable(self._state, data)
                self._launched(done, size)
                ran += size
        return ran

    def precompile(self, spe_values: Iterable[int] | None = None) -> tuple[CompileRecord, ...]:
        """Compile the calls for ``spe_values`` (default: every candidate) now, not mid-training.

        Uses the shapes of the next batch (peeked, not consumed). Values that are not candidates
        are compiled as the candidate calls they decompose into. Returns the new records.
        """
        values = self._candidates if spe_values is None else tuple(spe_values)
        sizes = sorted(
            {
                size
                for v in values
                for size in decompose(check_int("spe", v, minimum=1), self._candidates)
            }
        )
        peeked = take(self._batches, 1, self._pushback)
        if not peeked:
            raise ValueError(
                "precompile() needs a batch to learn the shapes from; 'batches' is empty"
            )
        self._pushback[:0] = peeked
        before = len(self._compile_log.records)
        key = _batch_key(peeked[0])
        for size in sizes:
            self._executable(size, key)
        return self._compile_log.records[before:]

    # Internals ----------------------------------------------------------------------------------

    @staticmethod
    def _same_shape_runs(batches: list[Any]) -> list[tuple[_Key, list[Any]]]:
        runs: list[tuple[_Key, list[Any]]] = []
        for batch in batches:
            key = _batch_key(batch)
            if runs and runs[-1][0] == key:
                runs[-1][1].append(batch)
            else:
                runs.append((key, [batch]))
        return runs

    def _executable(self, size: int, key: _Key) -> _Executable:
        executable = self._executables.get((size, key))
        if executable is None:
            signature = _describe(key)
            started = self._clock.now()
            data = _spec(key, None if size == 1 else size)
            jitted = jax.jit(self._multi_step(size), donate_argnums=(0,) if self._donate else ())
            executable = jitted.lower(self._state, data).compile()
            seconds = self._clock.now() - started
            self._executables[(size, key)] = executable
            self._compile_log.add(CompileRecord(size, seconds, started, signature))
            logger.debug("compiled a %d-step call in %.3f s for %s", size, seconds, signature)
        return executable

    def _multi_step(self, size: int) -> _Executable:
        step_fn = self._step_fn
        unroll = self._unroll

        if size == 1:  # what "one step per call" means: no loop, no stacking

            def one(state: Any, batch: Any) -> tuple[Any, Any, Any]:
                state, aux = step_fn(state, batch)
                return state, aux, jnp.int32(1)

            return one

        def many(state: Any, stacked: Any) -> tuple[Any, Any, Any]:
            first = jax.tree.map(lambda leaf: leaf[0], stacked)
            aux_spec = jax.eval_shape(step_fn, state, first)[1]
            aux0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_spec)

            def body(carry: tuple[Any, Any, Any], batch: Any) -> tuple[tuple[Any, Any, Any], None]:
                state, _, count = carry
                state, aux = step_fn(state, batch)
                # The carry's types must not change: drop weak types the step may return.
                aux = jax.tree.map(lambda a, s: lax.convert_element_type(a, s.dtype), aux, aux_spec)
                return (state, aux, count + 1), None

            carry = (state, aux0, jnp.int32(0))
            (state, aux, count), _ = lax.scan(body, carry, stacked, unroll=unroll)
            # All outputs of one execution are ready together; `count` is the cheap one to wait on.
            return state, aux, count

        return many

    def __repr__(self) -> str:
        return (
            f"MultiStepRunner(spe={int(self._spe)}, candidates={self._candidates}, "
            f"completed={self.counter()}, compiled={self._compile_log.compiled()})"
        )


_publish(globals())
