"""tickwork across ranks: one Coordinator for every process of a distributed job.

Built on the key-value store the job already runs (torch.distributed's Store, JAX's coordination
service), never a server of tickwork's own. Neither framework is imported until a store of theirs
is used. See ``docs/distributed.md``.
"""

from .._public import publish as _publish
from ._coordinator import Coordinator as Coordinator
from ._errors import DistributedError as DistributedError
from ._errors import FinalCheckpointError as FinalCheckpointError
from ._errors import RankDiedError as RankDiedError
from ._errors import RemoteError as RemoteError
from ._errors import StallError as StallError
from ._errors import StoreRecordError as StoreRecordError
from ._errors import StoreUnreachableError as StoreUnreachableError
from ._pace_policy import SlowRank as SlowRank
from ._preemption import FinalCheckpointReport as FinalCheckpointReport
from ._preemption import PreemptionInfo as PreemptionInfo
from ._preemption import PreemptionStop as PreemptionStop
from ._spe import SharedStepsPerExecution as SharedStepsPerExecution
from ._store import KVStore as KVStore
from ._store import MemoryStore as MemoryStore
from ._store import StoreError as StoreError

__all__ = [
    "Coordinator",
    "DistributedError",
    "FinalCheckpointError",
    "FinalCheckpointReport",
    "KVStore",
    "MemoryStore",
    "PreemptionInfo",
    "PreemptionStop",
    "RankDiedError",
    "RemoteError",
    "SharedStepsPerExecution",
    "SlowRank",
    "StallError",
    "StoreError",
    "StoreRecordError",
    "StoreUnreachableError",
]

_publish(globals())
