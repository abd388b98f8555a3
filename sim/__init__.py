"""tfus physics: CT ingest, HU → medium, transducer geometry, windows, the k-Wave driver, phantoms, O'Neil.

Public names (docs/INTERNALS.md) are importable from ``sim`` and resolved lazily, so ``import sim`` stays
cheap and never imports k-wave-python (only running a simulation does, through ``sim.kwave_import``).
No submodule may share a name with a public function (``sim.simulate`` is the function; its module is
``sim.simulation``): importing a submodule sets the package attribute of the same name to the module.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "kwave_modules": "sim.kwave_import",
    "Volume": "sim.ingest", "load_volume": "sim.ingest", "save_nifti": "sim.ingest", "resample": "sim.ingest",
    "TransducerConfig": "sim.config", "SimConfig": "sim.config", "get_preset": "sim.config",
    "load_sim_config": "sim.config", "PRESETS": "sim.config",
    "MediumConfig": "sim.medium", "Medium": "sim.medium", "hu_to_medium": "sim.medium",
    "Bowl": "sim.transducer",
    "make_phantom": "sim.phantom", "write_phantom": "sim.phantom",
    "Placement": "sim.placement", "plan_placements": "sim.placement",
    "Window": "sim.window", "make_window": "sim.window", "plan_window": "sim.window",
    "SimResult": "sim.simulation", "simulate": "sim.simulation", "simulate_free_field": "sim.simulation",
    "simulate_window": "sim.simulation", "write_simulation": "sim.simulation", "validate_config": "sim.simulation",
    "estimate_memory_bytes": "sim.memory",
    "oneil_on_axis": "sim.oneil",
    "field_summary": "sim.fieldstats",
    "run_oneil_validation": "sim.validation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
