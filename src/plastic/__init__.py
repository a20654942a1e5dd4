"""plastic: find where a pretrained image model has lost plasticity and re-initialize exactly that.

The library behind the ``plastic`` command, flat like safetensors' ``load_file``/``save_file``:

- ``inspect_checkpoint(path)``: tensors, layers, dtypes, parameter counts, weight statistics.
- ``diagnose_checkpoint(path, data)``: per-layer loss-of-plasticity scores on calibration images,
  and a recommendation.
- ``reinit_checkpoint(path, strategy, output, report=...)``: the new checkpoint.
- ``diagnose_model(model, images)`` and ``reinit_model(model, strategy, report=...)``: the same on a
  model in memory (in place), for training scripts.
- ``InspectReport``, ``DiagnoseReport`` (its ``LayerDiagnosis``, ``BlockDiagnosis``, ``StageDiagnosis``,
  ``Calibration``, ``Recommendation``, ``TrialResult``) and ``ReinitResult``: what those return.
- ``Options``, ``list_strategies()``, ``register_strategy(name, help)``: the strategies' options and
  registry; ``Context``, ``Plan``, ``Change``, ``Fill``, ``Kind``, ``Need``, ``Value``: what a custom
  strategy is given and returns.

Results are dataclasses; their ``to_dict()`` is exactly the command's ``--json`` document, and whatever
takes a report takes the dataclass or that document. Errors are ``PlasticError`` subclasses (in
:mod:`plastic.errors`); the library never prints or exits. Importing ``plastic`` is cheap: torch and
timm are imported by the functions that need them, on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from plastic.errors import (
    ArchitectureError,
    CheckpointError,
    DataError,
    DeviceError,
    OutputError,
    PlasticError,
    ResourceError,
    StrategyError,
    UnsafeCheckpointError,
    UsageError,
)

__version__ = "0.1.0"

# name -> the module that defines it, imported on first access (PEP 562)
_LAZY = {
    "inspect_checkpoint": "plastic.pipelines.inspect",
    "diagnose_checkpoint": "plastic.pipelines.diagnose",
    "reinit_checkpoint": "plastic.api",
    "diagnose_model": "plastic.pipelines.live_diagnose",
    "reinit_model": "plastic.pipelines.live_reinit",
    "Options": "plastic.reinit.options",
    "list_strategies": "plastic.reinit.strategies",
    "register_strategy": "plastic.reinit.strategies",
    # what a custom strategy is given and returns (``register_strategy``'s example)
    "Context": "plastic.reinit.registry",
    "Plan": "plastic.reinit.registry",
    "Change": "plastic.reinit.registry",
    "StrategyInfo": "plastic.reinit.registry",
    "Fill": "plastic.reinit.options",
    "Kind": "plastic.reinit.options",
    "Need": "plastic.reinit.options",
    "Value": "plastic.reinit.options",
    # the results: each a dataclass whose to_dict() is its command's --json document (or its part of it)
    "InspectReport": "plastic.pipelines.inspect",
    "DiagnoseReport": "plastic.pipelines.report",
    "LayerDiagnosis": "plastic.pipelines.report",
    "BlockDiagnosis": "plastic.pipelines.report",
    "StageDiagnosis": "plastic.pipelines.report",
    "Calibration": "plastic.pipelines.report",
    "TrialResult": "plastic.pipelines.report",
    "Recommendation": "plastic.decide.recommend",
    "ReinitResult": "plastic.pipelines.manifest",
}


def __getattr__(name: str) -> Any:
    """The API's functions, imported on first use: ``import plastic`` stays cheap for the command line."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'plastic' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The API, the errors and the package's own dunders: not the helpers this module imports."""
    return sorted({*__all__, *(e.__name__ for e in _ERRORS), "errors", "__doc__", "__name__", "__path__"})


# What `from plastic import *` and help(plastic) show: the API and the base error. The other errors
# are importable from here too and are documented in plastic.errors.
__all__ = [
    "BlockDiagnosis",
    "Calibration",
    "Change",
    "Context",
    "DiagnoseReport",
    "Fill",
    "InspectReport",
    "Kind",
    "LayerDiagnosis",
    "Need",
    "Options",
    "Plan",
    "PlasticError",
    "Recommendation",
    "ReinitResult",
    "StageDiagnosis",
    "StrategyInfo",
    "TrialResult",
    "Value",
    "__version__",
    "diagnose_checkpoint",
    "diagnose_model",
    "inspect_checkpoint",
    "list_strategies",
    "register_strategy",
    "reinit_checkpoint",
    "reinit_model",
]

_ERRORS = (
    ArchitectureError, CheckpointError, DataError, DeviceError, OutputError, ResourceError,
    StrategyError, UnsafeCheckpointError, UsageError,
)  # fmt: skip
