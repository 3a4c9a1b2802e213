"""Finding the store, the rank and the world size when the caller does not give them."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from ._engines import JaxClientStore, as_kv_store
from ._store import KVStore, MemoryStore

__all__ = ["Resolved", "resolve"]


@dataclass(frozen=True)
class Resolved:
    store: KVStore
    rank: int
    world_size: int
    hosts_store: bool
    engine: str  # "torch", "jax" or "memory"


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int; got {raw!r}") from None


def _torch_default() -> tuple[Any, int, int] | None:
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    from torch.distributed import distributed_c10d

    # torch's private API: the default process group's store, which the design builds on.
    store = distributed_c10d._get_default_store()  # noqa: SLF001 - torch's own default store
    return store, dist.get_rank(), dist.get_world_size()


def _jax_default() -> tuple[Any, int, int] | None:
    if "jax" not in sys.modules:
        return None
    try:
        from jax._src import distributed as jax_distributed
    except ImportError:  # pragma: no cover - a JAX without the coordination service
        return None
    state = jax_distributed.global_state
    if state.client is None:
        return None
    return state.client, int(state.process_id), int(state.num_processes)


def _under_agent_store() -> bool:
    return os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"


def resolve(
    store: object, rank: int | None, world_size: int | None, hosts_store: bool | None
) -> Resolved:
    """The store adapter, rank, world size and whether this rank hosts the store."""
    found_rank: int | None = None
    found_world: int | None = None
    if store is None:
        default = _torch_default() or _jax_default()
        if default is None:
            raise ValueError(
                "'store' is None, but neither torch.distributed (init_process_group) nor "
                "jax.distributed (initialize) is initialised: pass a store (a torch.distributed "
                "Store, a JAX coordination client or a tickwork.distributed.MemoryStore)"
            )
        store, found_rank, found_world = default
    kv = as_kv_store(store)
    engine = "jax" if isinstance(kv, JaxClientStore) else "memory"
    if engine == "memory" and not isinstance(kv, MemoryStore):
        engine = "torch"
    if found_rank is None and engine == "torch":
        default = _torch_default()
        if default is not None:
            _, found_rank, found_world = default
    if found_rank is None and engine == "jax":
        default = _jax_default()
        if default is not None:
            _, found_rank, found_world = default
    if rank is None:
        rank = found_rank if found_rank is not None else _env_int("RANK")
    if world_size is None:
        world_size = found_world if found_world is not None else _env_int("WORLD_SIZE")
    if engine == "memory":
        rank = 0 if rank is None else rank
        world_size = 1 if world_size is None else world_size
    if rank is None or world_size is None:
        raise ValueError(
            "'rank' and 'world_size' are needed: pass them, initialise torch.distributed or "
            f"jax.distributed, or run under torchrun (RANK, WORLD_SIZE); got rank={rank!r}, "
            f"world_size={world_size!r}"
        )
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"'world_size' must be an int >= 1; got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"'rank' must be an int in [0, world_size={world_size}); got {rank!r}")
    if hosts_store is None:
        # torchrun's agent hosts the store; plain env:// (and a TCPStore made by rank 0, and
        # JAX's coordination service) live in rank 0's process.
        hosts_store = rank == 0 and engine != "memory" and not _under_agent_store()
    return Resolved(kv, rank, world_size, bool(hosts_store), engine)
