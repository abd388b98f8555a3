"""Fused element-wise updates of ``sim.engine``'s time step, compiled with Numba (CPU).

With NumPy each update of the step is several passes over the grid (``u *= pml²; g *= coef; u -= g`` reads
and writes u twice and g twice); at 128³ those ~40 passes took 50 ms of a 93 ms step, against 43 ms for the
ten transforms. The kernels here take all three axes in one pass each, so a step's element-wise work is
four passes: the three gradient spectra from F[p] (F[p] and κ read once), the three velocities, the three
divergence spectra, and the three split densities with the pressure (the divergence total lives in a
register, not in a grid). That is ~140 bytes per cell and step against ~220 with one pass per axis and
update (128³: 22 → ~15 ms, docs/PERFORMANCE.md). The density coefficient is ``pml_i · (dt·ρ0)``, the 1D
profile times one grid shared by the axes, instead of a grid per axis. The arithmetic is the engine's NumPy
path term by term (no fastmath), so the two agree to rounding (tests/sim/test_engine.py); the lock-in's
per-step accumulation (``lockin``) is one pass too.

The kernels are serial. They are memory-bound; on the 2-core machine a second Numba thread did not make
them faster (128³: 21.2 ms with 2 OpenMP threads, 21.6 ms with one) and slowed the FFTW threads that
follow them (the transforms of a step 48 → 55-72 ms, Numba's idle threads spin-waiting), so the whole step
was fastest with serial kernels (docs/PERFORMANCE.md). Serial kernels also need no threading layer: several
simulations in one Dask worker run theirs concurrently (``nogil``).
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
    def _gradient_spectra(spec, kappa, o0, o1, o2, g0, g1, g2):  # pragma: no cover  (compiled)
        """g_a = (F[p] · κ) · op_a for the three axes (op_a 1D along axis a). ``spec`` must not be one of the
        outputs: LLVM's runtime alias check then takes the scalar loop (128³: 3.8 ms against 1.6 ms)."""
        n0, n1, n2 = spec.shape
        for i in range(n0):
            a = o0[i]
            for j in range(n1):
                b = o1[j]
                for k in range(n2):
                    q = spec[i, j, k] * kappa[i, j, k]
                    g0[i, j, k] = q * a
                    g1[i, j, k] = q * b
                    g2[i, j, k] = q * o2[k]

    @_nb.njit(**_OPTS)
    def _divergence_spectra(s0, s1, s2, kappa, o0, o1, o2):  # pragma: no cover  (compiled)
        """s_a ← (s_a · κ) · op_a in place, s_a = F[u_a]."""
        n0, n1, n2 = s0.shape
        for i in range(n0):
            a = o0[i]
            for j in range(n1):
                b = o1[j]
                for k in range(n2):
                    kap = kappa[i, j, k]
                    s0[i, j, k] = (s0[i, j, k] * kap) * a
                    s1[i, j, k] = (s1[i, j, k] * kap) * b
                    s2[i, j, k] = (s2[i, j, k] * kap) * o2[k]

    @_nb.njit(**_OPTS)
    def _velocity(u0, u1, u2, q0, q1, q2, c0, c1, c2, g0, g1, g2):  # pragma: no cover  (compiled)
        """u_a ← pml'²_a · u_a − coef_a · ∂_a p  (coef_a = pml'_a · dt / ρ0'_a; pml'²_a 1D along axis a)."""
        n0, n1, n2 = u0.shape
        for i in range(n0):
            a = q0[i]
            for j in range(n1):
                b = q1[j]
                for k in range(n2):
                    u0[i, j, k] = a * u0[i, j, k] - c0[i, j, k] * g0[i, j, k]
                    u1[i, j, k] = b * u1[i, j, k] - c1[i, j, k] * g1[i, j, k]
                    u2[i, j, k] = q2[k] * u2[i, j, k] - c2[i, j, k] * g2[i, j, k]

    @_nb.njit(**_OPTS)
    def _mass_state(r0, r1, r2, q0, q1, q2, m0, m1, m2, rho_dt, d0, d1, d2, src, s0, s1, s2,
                    c0_sq, absorb, absorbing, p):  # pragma: no cover  (compiled)
        """ρ_a ← pml²_a · ρ_a − (pml_a · dt ρ0) · ∂_a u_a + s_a · S, then p = c0² · (Σ ρ_a + τρ0 · Σ ∂_a u_a)."""
        n0, n1, n2 = p.shape
        with_source = s0 != 0.0 or s1 != 0.0 or s2 != 0.0
        for i in range(n0):
            e0, f0 = q0[i], m0[i]
            for j in range(n1):
                e1, f1 = q1[j], m1[j]
                for k in range(n2):
                    a0, a1, a2 = d0[i, j, k], d1[i, j, k], d2[i, j, k]
                    w = rho_dt[i, j, k]
                    v0 = e0 * r0[i, j, k] - a0 * (f0 * w)
                    v1 = e1 * r1[i, j, k] - a1 * (f1 * w)
                    v2 = q2[k] * r2[i, j, k] - a2 * (m2[k] * w)
                    if with_source:
                        f = src[i, j, k]
                        v0 += f * s0
                        v1 += f * s1
                        v2 += f * s2
                    r0[i, j, k], r1[i, j, k], r2[i, j, k] = v0, v1, v2
                    v = (v0 + v1) + v2
                    if absorbing:
                        v += ((a0 + a1) + a2) * absorb[i, j, k]
                    p[i, j, k] = v * c0_sq[i, j, k]

    @_nb.njit(**_OPTS)
    def _lockin(p, re, im, c, s):  # pragma: no cover  (compiled)
        """re += c · p, im += s · p (``p`` may be a strided view: the box cropped from the padded grid)."""
        n0, n1, n2 = re.shape
        for i in range(n0):
            for j in range(n1):
                for k in range(n2):
                    v = p[i, j, k]
                    re[i, j, k] += v * c
                    im[i, j, k] += v * s


class FusedKernels:
    """The engine's updates as single-pass, three-axis kernels (serial, GIL released) for one real ``dtype``."""

    def __init__(self, dtype=np.float32) -> None:
        if _nb is None:
            raise ValueError("`kernels='numba'` needs Numba: pip install numba")
        self.dtype = np.dtype(dtype)
        self._scalar = np.float32 if self.dtype == np.float32 else float
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile (or load from the cache) every kernel now, on 2³ arrays of the engine's types, so that
        the first time step is not the one that pays for it."""
        real, cplx = self.dtype, np.result_type(self.dtype, np.complex64)
        a = np.zeros((2, 2, 2), real)
        spec, line, cline = np.zeros((2, 2, 2), cplx), np.ones(2, real), np.ones(2, cplx)
        self.gradient_spectra(spec, a, (cline,) * 3, (spec,) * 3)
        self.divergence_spectra((spec,) * 3, a, (cline,) * 3)
        self.velocity((a,) * 3, (line,) * 3, (a,) * 3, (a,) * 3)
        for absorbing in (False, True):
            self.mass_state((a,) * 3, (line,) * 3, (line,) * 3, a, (a,) * 3, a, (1.0,) * 3, a,
                            a if absorbing else None, a)
        box = np.zeros((3, 3, 3), real)[1:, 1:, 1:]  # a cropped view, as the lock-in gets
        self.lockin(box, a, a, 1.0, 0.0)

    def gradient_spectra(self, spec, kappa, ops, out) -> None:
        _gradient_spectra(spec, kappa, *(o.ravel() for o in ops), *out)

    def divergence_spectra(self, specs, kappa, ops) -> None:
        _divergence_spectra(*specs, kappa, *(o.ravel() for o in ops))

    def velocity(self, u, pml2, coef, grad) -> None:
        _velocity(*u, *(q.ravel() for q in pml2), *coef, *grad)

    def mass_state(self, rho, pml2, pml, rho_dt, div, src, s, c0_sq, absorb, p) -> None:
        """``s``: the source scalar per axis (s(t)/d_a; 0 = no source this step, ``src`` then unread)."""
        absorbing = absorb is not None
        sc = self._scalar
        _mass_state(*rho, *(q.ravel() for q in pml2), *(q.ravel() for q in pml), rho_dt, *div, src,
                    sc(s[0]), sc(s[1]), sc(s[2]), c0_sq, absorb if absorbing else c0_sq, absorbing, p)

    def lockin(self, p, re, im, c: float, s: float) -> None:
        sc = self._scalar
        _lockin(p, re, im, sc(c), sc(s))
