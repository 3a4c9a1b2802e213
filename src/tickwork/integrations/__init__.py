"""Per-framework integrations, each a public submodule that imports its framework.

``tickwork.integrations.jax``, ``tickwork.integrations.torch``, ``tickwork.integrations.keras``,
``tickwork.integrations.lightning`` and ``tickwork.integrations.transformers`` are imported
explicitly; this package imports none of them, so ``import tickwork`` never imports a
framework. What the runners share (the tuner's contract, compile accounting) is framework-free and
re-exported here.
"""

from ._multistep import CompileLog as CompileLog
from ._multistep import CompileRecord as CompileRecord
from ._multistep import SpeRunner as SpeRunner
from ._multistep import choose_spe as choose_spe
from ._multistep import decompose as decompose
from ._multistep import powers_of_two as powers_of_two

__all__ = ["CompileLog", "CompileRecord", "SpeRunner", "choose_spe", "decompose", "powers_of_two"]
