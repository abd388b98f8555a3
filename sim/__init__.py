"""tfus physics: CT ingest, HU → medium, transducer geometry, windows, the k-Wave driver, phantoms, O'Neil.

Public names (docs/INTERNALS.md) are importable from ``sim`` and resolved lazily, so ``import sim`` stays
cheap and never imports k-wave-python (only running a simulation does, through ``sim.kwave_import``).
No submodule may share a name with a public function (``sim.simulate`` is the function; its module is
``sim.simulation``): importing a submodule sets the package attribute of the same name to the module.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "kwave_modules": "tfus.sim.kwave_import",
    "Volume": "tfus.sim.ingest", "load_volume": "tfus.sim.ingest", "save_nifti": "tfus.sim.ingest", "resample": "tfus.sim.ingest",
    "TransducerConfig": "tfus.sim.config", "SimConfig": "tfus.sim.config", "get_preset": "tfus.sim.config",
    "load_sim_config": "tfus.sim.config", "PRESETS": "tfus.sim.config",
    "MediumConfig": "tfus.sim.medium", "Medium": "tfus.sim.medium", "hu_to_medium": "tfus.sim.medium",
    "Bowl": "tfus.sim.transducer",
    "make_phantom": "tfus.sim.phantom", "write_phantom": "tfus.sim.phantom",
    "ScannerHead": "tfus.sim.scanner_phantom", "make_scanner_head": "tfus.sim.scanner_phantom", "write_scanner_head": "tfus.sim.scanner_phantom",
    "Placement": "tfus.sim.placement", "plan_placements": "tfus.sim.placement",
    "Window": "tfus.sim.window", "make_window": "tfus.sim.window", "plan_window": "tfus.sim.window",
    "SimResult": "tfus.sim.simulation", "simulate": "tfus.sim.simulation", "simulate_free_field": "tfus.sim.simulation",
    "simulate_window": "tfus.sim.simulation", "write_simulation": "tfus.sim.simulation", "validate_config": "tfus.sim.simulation",
    "estimate_memory_bytes": "tfus.sim.memory",
    "oneil_on_axis": "tfus.sim.oneil",
    "field_summary": "tfus.sim.fieldstats",
    "run_oneil_validation": "tfus.sim.validation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tfus.sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
