"""The rendezvous: every rank writes who it is, then waits (bounded) for all the others.

Each rank writes ``info/<rank>`` (host, pid, world size and a random nonce that tags its later
agreement answers) and waits for every rank's record. Records are checked like everything else
read from the store, and the ranks must agree on the world size.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import final

from ._errors import StoreRecordError
from ._records import Beat, PeerInfo, encode, parse_peer
from ._tracked import TrackedStore

__all__ = ["Keys", "Peers", "rendezvous"]


@final
class Keys:
    """The store keys of one Coordinator, all under ``tickwork/<run>/<restart>/<namespace>/``."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def info(self, rank: int) -> str:
        return f"{self.prefix}info/{rank}"

    def beat(self, rank: int) -> str:
        return f"{self.prefix}hb/{rank}"

    def entry(self, index: int) -> str:
        return f"{self.prefix}ev/{index}"

    def answer(self, index: int, rank: int) -> str:
        return f"{self.prefix}ag/{index}/{rank}"

    def bell(self, rank: int) -> str:
        return f"{self.prefix}bell/{rank}"


@final
@dataclass(frozen=True, kw_only=True)
class Peers:
    """What the rendezvous learned: every rank's record, this rank's own among them."""

    rank: int
    world: int
    info: dict[int, PeerInfo]

    @property
    def me(self) -> PeerInfo:
        return self.info[self.rank]

    def where(self, rank: int) -> str:
        """``"host, pid 123"`` for error messages ("?" for a rank outside the world)."""
        peer = self.info.get(rank)
        return "?" if peer is None else f"{peer.host}, pid {peer.pid}"


def rendezvous(kv: TrackedStore, keys: Keys, rank: int, world: int, timeout: float) -> Peers:
    """Write this rank's record and wait up to ``timeout`` seconds for every rank's."""
    me = PeerInfo(
        host=socket.gethostname(), pid=os.getpid(), world_size=world, nonce=secrets.token_hex(8)
    )
    kv.set(keys.beat(rank), encode(Beat(count=0, step=None)))  # before info: peers read it
    kv.set(keys.info(rank), encode(me))
    names = [keys.info(r) for r in range(world)]
    if not kv.wait(names, timeout):
        missing = [r for r, v in enumerate(kv.get_many(names)) if v is None]
        raise TimeoutError(
            f"rank {rank}: ranks {missing} did not join within startup_timeout={timeout:g} s "
            f"through {kv.describe()} (prefix {keys.prefix!r})"
        )
    info: dict[int, PeerInfo] = {}
    for r, raw in enumerate(kv.get_many(names, present=True)):
        peer = parse_peer(raw, names[r], kv.describe())
        if peer.world_size != world:
            raise ValueError(
                f"rank {r} has world_size={peer.world_size} but rank {rank} has {world}: every "
                "rank must agree"
            )
        info[r] = peer
    if info[rank].nonce != me.nonce:
        raise StoreRecordError(
            names[rank],
            kv.describe(),
            f"this rank's record was overwritten (nonce {info[rank].nonce!r}, written "
            f"{me.nonce!r}): two processes claim rank {rank}, or another job uses the same "
            "run_id and namespace",
        )
    return Peers(rank=rank, world=world, info=info)
