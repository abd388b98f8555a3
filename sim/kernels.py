"""Fused element-wise updates of ``sim.engine``'s time step, compiled with Numba (CPU).

With NumPy each update of the step is several passes over the grid (``u *= pml²; g *= coef; u -= g`` reads
and writes u twice and g twice); at 128³ those ~40 passes took 50 ms of a 93 ms step, against 43 ms for the
ten transforms. Each kernel here is one pass (measured 128³ inside a step: ~22 ms for all of a step's
updates). The arithmetic is the engine's NumPy path term by term (float32 in, float32 out, no fastmath), so
the two agree to rounding (tests/sim/test_engine.py).

The kernels are serial. They are memory-bound (~220 bytes per cell and step); on the 2-core machine a
second Numba thread did not make them faster (128³: 21.2 ms with 2 OpenMP threads, 21.6 ms with one) and
slowed the FFTW threads that follow them (the transforms of a step 48 → 55-72 ms, Numba's idle threads
spin-waiting), so the whole step was fastest with serial kernels (docs/PERFORMANCE.md). Serial kernels
also need no threading layer: several simulations in one Dask worker run theirs concurrently (``nogil``).
Compiled once per dtype and cached on disk (``cache=True``: next to this file, or Numba's user cache when
that is read-only); a fresh process loads them in ~0.5 s.
"""

from __future__ import annotations

import numpy as np

try:
    import numba as _nb
except ImportError:  # the engine falls back to its NumPy updates
    _nb = None

_OPTS = dict(cache=True, nogil=True, fastmath=False, boundscheck=False)


def available() -> bool:
    return _nb is not None


if _nb is not None:

    @_nb.njit(**_OPTS)
    def _spectrum_times(spec, kappa, op, axis, out):  # pragma: no cover  (compiled)
        """out = spec · (κ · op[axis index]): the k-space gradient/divergence filter, op 1D along ``axis``."""
        n0, n1, n2 = spec.shape
        for i in range(n0):
            for j in range(n1):
                for k in range(n2):
                    o = op[i] if axis == 0 else (op[j] if axis == 1 else op[k])
                    out[i, j, k] = spec[i, j, k] * (kappa[i, j, k] * o)

    @_nb.njit(**_OPTS)
    def _velocity(u, pml2, coef, grad, axis):  # pragma: no cover  (compiled)
        """u ← pml'² · u − coef · ∇p  (coef = pml' · dt / ρ0'; pml'² 1D along ``axis``)."""
        n0, n1, n2 = u.shape
        for i in range(n0):
            for j in range(n1):
                for k in range(n2):
                    q = pml2[i] if axis == 0 else (pml2[j] if axis == 1 else pml2[k])
                    u[i, j, k] = q * u[i, j, k] - coef[i, j, k] * grad[i, j, k]

    @_nb.njit(**_OPTS)
    def _density(rho, pml2, coef, div, axis, total, first, absorbing, src, s):  # pragma: no cover
        """ρ_i ← pml² · ρ_i − coef · ∂_i u_i + s · S;  total (Σ ∂_i u_i) ← ∂_i u_i (first) or += it."""
        n0, n1, n2 = rho.shape
        with_source = s != 0.0
        for i in range(n0):
            for j in range(n1):
                for k in range(n2):
                    q = pml2[i] if axis == 0 else (pml2[j] if axis == 1 else pml2[k])
                    d = div[i, j, k]
                    if absorbing:
                        if first:
                            total[i, j, k] = d
                        else:
                            total[i, j, k] += d
                    d *= coef[i, j, k]  # the NumPy path's order: (q · ρ − coef·d) + s·S
                    r = q * rho[i, j, k] - d
                    if with_source:
                        r += src[i, j, k] * s
                    rho[i, j, k] = r

    @_nb.njit(**_OPTS)
    def _pressure(p, r0, r1, r2, c0_sq, absorb, total, absorbing):  # pragma: no cover  (compiled)
        """p = c0² · (ρx + ρy + ρz + τρ0 · Σ∇·u)."""
        n0, n1, n2 = p.shape
        for i in range(n0):
            for j in range(n1):
                for k in range(n2):
                    v = r0[i, j, k] + r1[i, j, k] + r2[i, j, k]
                    if absorbing:
                        v += total[i, j, k] * absorb[i, j, k]
                    p[i, j, k] = v * c0_sq[i, j, k]


class FusedKernels:
    """The engine's updates as single-pass kernels (serial, GIL released) for one real ``dtype``."""

    def __init__(self, dtype=np.float32) -> None:
        if _nb is None:
            raise ValueError("`kernels='numba'` needs Numba: pip install numba")
        self.dtype = np.dtype(dtype)
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile (or load from the cache) every kernel now, on 2³ arrays of the engine's types, so that
        the first time step is not the one that pays for it."""
        real, cplx = self.dtype, np.result_type(self.dtype, np.complex64)
        a, b = np.zeros((2, 2, 2), real), np.zeros((2, 2, 2), real)
        spec, line, cline = np.zeros((2, 2, 2), cplx), np.ones(2, real), np.ones(2, cplx)
        self.spectrum_times(spec, a, cline, 0, spec)
        self.velocity(a, line, b, a, 0)
        for absorbing in (False, True):
            self.density(a, line, b, a, 0, b if absorbing else None, True, b, 1.0)
            self.pressure(a, (a, b, a), b, b if absorbing else None, b if absorbing else None)

    @staticmethod
    def _launch(fn, *args) -> None:
        fn(*args)

    def spectrum_times(self, spec, kappa, op, axis: int, out) -> None:
        self._launch(_spectrum_times, spec, kappa, op.ravel(), axis, out)

    def velocity(self, u, pml2, coef, grad, axis: int) -> None:
        self._launch(_velocity, u, pml2.ravel(), coef, grad, axis)

    def density(self, rho, pml2, coef, div, axis: int, total, first: bool, src, s: float) -> None:
        absorbing = total is not None
        self._launch(_density, rho, pml2.ravel(), coef, div, axis, total if absorbing else div, first,
                     absorbing, src, np.float32(s) if rho.dtype == np.float32 else float(s))

    def pressure(self, p, rho, c0_sq, absorb, total) -> None:
        absorbing = absorb is not None
        self._launch(_pressure, p, rho[0], rho[1], rho[2], c0_sq, absorb if absorbing else c0_sq,
                     total if absorbing else c0_sq, absorbing)
