"""Memory estimate of one simulation, checked against the available RAM *before* anything is allocated.

Engine "tfus" (``sim.engine``, fused kernels): per padded cell 7 fields (p, 3 u, 3 split ρ), 5-6 coefficient
grids (c0², 3 dt/ρ0' with the PML, dt·ρ0, τ·ρ0), the filtered source (two for an array, plus their mix),
three real work grids and four complex half spectra, half-spectrum κ (~22 float32-sized arrays; the NumPy
updates hold about as many), plus the set-up's transients (float64 bowl weights, the float64 source
filtering, the padded medium): measured ~128 B per cell of traced peak at 128³ (docs/PERFORMANCE.md);
estimated as 144.
Engine "kwave": the Python backend holds ~36 float32-sized arrays (p, 3 u, 3 split ρ,
c0, ρ0, c0², 3 staggered ρ0, 3 dt/ρ0, κ, source κ, |k|, absorption τ, complex FFT buffers, temporaries of
the update), and the source set-up briefly holds float64 grid weights and the padded medium. Per cell of
the returned box: 4 lock-in accumulators and the float64 results. Calibrated against the peak RSS measured
by ``benchmarks/bench_solver.py`` (see docs/PERFORMANCE.md); deliberately on the high side.
"""

from __future__ import annotations

import os

import numpy as np

BYTES_PER_PADDED_CELL = {"float32": 48 * 4 + 3 * 8, "float64": 48 * 8 + 3 * 8}  # engine "kwave"
BYTES_PER_PADDED_CELL_TFUS = {"float32": 36 * 4, "float64": 36 * 8}
BYTES_PER_BOX_CELL = 4 * 4 + 6 * 8
BOWL_SETUP_BYTES = 64 * 2**20  # the chunked BLI sum of the bowl weights (sim.offgrid): ~50 MB at any grid
BASELINE_BYTES = 250 * 2**20  # interpreter, numpy/scipy/k-wave imports (measured RSS ~150-200 MB)


def estimate_memory_bytes(config, grid_shape, device: str = "cpu") -> int:
    """Estimated peak bytes (host RAM; device memory for ``device='gpu'``) for a box of ``grid_shape``."""
    from tfus.sim.solver import padded_layout  # noqa: PLC0415

    shape = tuple(int(n) for n in grid_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`grid_shape` must be three positive integers, got {grid_shape}")
    padded, _ = padded_layout(shape, int(config.pml_size))
    n_padded = int(np.prod(padded, dtype=np.int64))
    n_box = int(np.prod(shape, dtype=np.int64))
    per_cell = (BYTES_PER_PADDED_CELL_TFUS if getattr(config, "engine", "kwave") == "tfus"
                else BYTES_PER_PADDED_CELL)[config.dtype]
    total = n_padded * per_cell + n_box * BYTES_PER_BOX_CELL + BOWL_SETUP_BYTES
    return int(total + (BASELINE_BYTES if device == "cpu" else 0))


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo (Linux), else psutil if installed, else None (unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil  # noqa: PLC0415
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def check_memory(needed_bytes: int, what: str = "simulation", available: int | None = None) -> None:
    """Raise ``ValueError`` (one line) when ``needed_bytes`` exceeds the available memory.

    ``TFUS_MEMORY_LIMIT_BYTES`` (environment) overrides the available amount, e.g. to leave room for
    several simulations per machine.
    """
    env = os.environ.get("TFUS_MEMORY_LIMIT_BYTES")
    if available is None:
        available = int(float(env)) if env else available_memory_bytes()
    if available is not None and needed_bytes > available:
        raise ValueError(f"{what} needs about {needed_bytes / 2**30:.2f} GiB but only "
                         f"{available / 2**30:.2f} GiB is available; use a coarser --spacing-mm, a smaller "
                         "--crop-mm/window, or a machine with more memory")
