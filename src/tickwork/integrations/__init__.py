"""Per-framework integrations, each a public submodule that imports its framework.

``tickwork.integrations.jax``, ``tickwork.integrations.torch``, ``tickwork.integrations.keras``,
``tickwork.integrations.lightning`` and ``tickwork.integrations.transformers`` are imported
explicitly; this package imports none of them, so ``import tickwork`` never imports a
framework. What the runners share and users see (the tuner's contract, compile accounting) is
framework-free and re-exported here, with the options every ``TickworkCallback`` takes
(:class:`LinkOptions`, :class:`LinkSettings`: the types of their ``**options``).
"""

from .._public import publish as _publish
from ._multistep import CompileLog as CompileLog
from ._multistep import CompileRecord as CompileRecord
from ._multistep import SpeRunner as SpeRunner
from ._trainer_link import LinkOptions as LinkOptions
from ._trainer_link import LinkSettings as LinkSettings

__all__ = ["CompileLog", "CompileRecord", "LinkOptions", "LinkSettings", "SpeRunner"]

_publish(globals())
