"""A fast time stepper for k-wave-python's k-space scheme (``kspace_solver.Simulation.step``), CPU or GPU.

The scheme is k-wave-python 0.6.2's, term by term (3D, staggered grid, k-space corrected, split density
with a PML per axis, additive k-space-filtered pressure source, Stokes absorption when y = 2):

    u_i   ← pml'_i · (pml'_i · u_i − dt/ρ0'_i · F⁻¹[i k_i e^{+i k_i d_i/2} κ F[p]])
    ρ_i   ← pml_i · (pml_i · ρ_i − dt ρ0 · F⁻¹[i k_i e^{−i k_i d_i/2} κ F[u_i]]) + s(t) · S / d_i
    p     = c0² · (Σ ρ_i + τ ρ0 Σ_i ∇_i·u_i)                       (τ = −2 α c0; τ term only with y = 2)

with κ = sinc(c_ref |k| dt / 2), ρ0'_i the density averaged onto the staggered points (last cell copied),
pml' the staggered profile, and S = F⁻¹[cos(c_ref |k| dt/2) F[w · 2 dt / (3 c0)]] the k-space filtered
bowl weights, computed once: the drive is one scalar s(t) times fixed weights, so k-wave-python's two
source transforms per step (and per axis) are not needed.

What makes it fast: real-to-complex transforms (half the spectrum; k-wave-python uses complex ``fftn``),
multithreaded FFTW plans made once (pyFFTW; pocketFFT or ``scipy.fft`` as fallbacks) or cuFFT, κ applied
once per spectrum (with the inverse's 1/N folded into it) and the shift-derivative as a 1D broadcast, and
every element-wise update in place into preallocated, aligned buffers: a CPU step allocates nothing
grid-sized.
Array order is C (as k-wave-python's Python backend); ``.p`` is the pressure on the padded grid.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tfus.sim.source import as_terms

N_DIM = 3  # pressure sources split evenly over the three density components (k-wave-python: ndim)


def default_fft_workers() -> int:
    """Threads for CPU transforms: ``TFUS_FFT_WORKERS``, else the cores this process may use, capped by
    ``OMP_NUM_THREADS`` when set (Dask's nanny sets it to 1 in its workers: one core per task there)."""
    env = os.environ.get("TFUS_FFT_WORKERS")
    if env:
        return max(1, int(env))
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(n, int(omp))) if omp.isdigit() and int(omp) > 0 else max(1, n)


@dataclass(frozen=True)
class EngineConfig:
    """Grid and time step of the padded grid (SI). ``c_ref_m_s=None``: the maximum sound speed (k-Wave's)."""

    spacing_m: float | tuple[float, float, float]
    dt_s: float
    pml_size: int = 10
    pml_alpha: float = 2.0
    c_ref_m_s: float | None = None
    dtype: str = "float32"
    device: str = "cpu"
    fft_workers: int | None = None   # CPU threads per transform; None: default_fft_workers()
    fft_library: str = "auto"        # CPU: "auto" | "fftw" | "pocketfft" | "scipy" (see Transforms)
    kernels: str = "auto"            # CPU element-wise updates: "auto" | "numba" (sim.kernels) | "numpy"

    def __post_init__(self) -> None:
        if not all(float(d) > 0 for d in self.spacings_m):
            raise ValueError(f"`spacing_m` must be > 0, got {self.spacing_m}")
        if not self.dt_s > 0:
            raise ValueError(f"`dt_s` must be > 0, got {self.dt_s}")
        if int(self.pml_size) != self.pml_size or self.pml_size < 0:
            raise ValueError(f"`pml_size` must be an integer >= 0, got {self.pml_size}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"`dtype` must be 'float32' or 'float64', got {self.dtype!r}")
        if self.device not in ("cpu", "gpu"):
            raise ValueError(f"`device` must be 'cpu' or 'gpu', got {self.device!r}")
        if self.fft_library not in FFT_LIBRARIES:
            raise ValueError(f"`fft_library` must be one of {FFT_LIBRARIES}, got {self.fft_library!r}")
        if self.kernels not in KERNELS:
            raise ValueError(f"`kernels` must be one of {KERNELS}, got {self.kernels!r}")
        if self.fft_workers is not None and int(self.fft_workers) < 1:
            raise ValueError(f"`fft_workers` must be >= 1, got {self.fft_workers}")

    @property
    def spacings_m(self) -> tuple[float, float, float]:
        d = self.spacing_m
        return tuple(float(x) for x in d) if np.ndim(d) else (float(d),) * N_DIM


def _pocketfft_binding():
    """scipy's pocketFFT binding, whose r2c/c2c/c2r take ``out=`` (``scipy.fft`` does not), or None."""
    try:
        from scipy.fft._pocketfft import pypocketfft as pp  # noqa: PLC0415  (private; checked below)

        x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        spec = np.empty((2, 3, 3), np.complex64)
        back = np.empty_like(x)
        pp.r2c(x, (0, 1, 2), True, 0, spec, 1)
        pp.c2c(spec, (0, 1), False, 2, spec, 1)
        pp.c2r(spec, (2,), 4, False, 2, back, 1)
        return pp if np.allclose(back, x, atol=1e-4) else None
    except Exception:  # noqa: BLE001  (any change of that private API: fall back to scipy.fft)
        return None


def _pyfftw():
    """pyFFTW (FFTW 3 with plans), or None when it is not installed."""
    try:
        import pyfftw  # noqa: PLC0415
    except ImportError:
        return None
    return pyfftw


FFT_LIBRARIES = ("auto", "fftw", "pocketfft", "scipy")
KERNELS = ("auto", "numba", "numpy")


class Transforms:
    """Real-to-complex 3D transforms of one grid shape: ``forward(x)`` → half spectrum, ``inverse(spec)`` →
    real grid. Results are reused buffers: a spectrum is valid until the next ``forward``, a real result until
    the next ``inverse``; ``inverse`` may overwrite its input. ``inverse`` is normalised by ``1/N`` unless
    ``inverse_scale`` is not 1: then the caller folds that factor in (FFTW's backward transform is
    unnormalised, and a separate pass over the grid would cost what the fold saves).
    Arrays given to ``forward``/``inverse`` should come from ``empty`` (aligned for FFTW's SIMD plans).

    CPU libraries (``library``), chosen by measurement on the 2-core machine (docs/PERFORMANCE.md):
    ``fftw``: pyFFTW plans made once per shape with FFTW_MEASURE (64³ float32, 2 threads: a forward +
    inverse pair 1.1 ms against pocketFFT's 2.2 ms; 128³: 9.1 vs 14.5 ms); ``pocketfft``: scipy's pocketFFT
    writing into preallocated buffers (``out=``); ``scipy``: ``scipy.fft.rfftn/irfftn``, which allocate.
    ``auto``: the first available of those. GPU: ``cupyx.scipy.fft`` (cuFFT plans cached by CuPy).
    """

    def __init__(self, shape, dtype, device: str = "cpu", workers: int = 1, library: str = "auto") -> None:
        if library not in FFT_LIBRARIES:
            raise ValueError(f"`fft_library` must be one of {FFT_LIBRARIES}, got {library!r}")
        self.shape = tuple(int(n) for n in shape)
        self.half_shape = self.shape[:-1] + (self.shape[-1] // 2 + 1,)
        self.workers = int(workers)
        self.dtype = np.dtype(dtype)
        self.complex_dtype = np.result_type(dtype, np.complex64)
        self.inverse_scale = 1.0
        self._pp = self._fftw = None
        if device == "gpu":
            try:
                import cupy as xp  # noqa: PLC0415
                import cupyx.scipy.fft as fft  # noqa: PLC0415
            except ImportError as exc:
                raise ValueError("`device='gpu'` needs CuPy: pip install 'tfus[gpu]' (cupy-cuda12x)") from exc
            self.xp, self._fft, self.backend = xp, fft, "cupyx.scipy.fft"
            return
        import scipy.fft as fft  # noqa: PLC0415

        self.xp, self._fft, self.backend = np, fft, "scipy.fft"
        pyfftw = _pyfftw() if library in ("auto", "fftw") else None
        if library == "fftw" and pyfftw is None:
            raise ValueError("`fft_library='fftw'` needs pyFFTW: pip install pyfftw")
        if pyfftw is not None:
            self._init_fftw(pyfftw)
            return
        self._pp = _pocketfft_binding() if library in ("auto", "pocketfft") else None
        if self._pp is not None:
            self._spec = np.empty(self.half_shape, self.complex_dtype)
            self._real = np.empty(self.shape, dtype)
            self.backend = "pocketfft (out=)"

    def _init_fftw(self, pyfftw) -> None:
        """Two plans (forward into ``_spec``, backward from it into ``_real``), measured once per shape and
        thread count: FFTW keeps the wisdom in the process, so the next simulation's plans are instant."""
        self._spec = self.empty(self.half_shape, self.complex_dtype)
        self._real = self.empty(self.shape, self.dtype)
        flags = ("FFTW_MEASURE",)
        self._fftw_fw = pyfftw.FFTW(self._real, self._spec, axes=(0, 1, 2), direction="FFTW_FORWARD",
                                    flags=flags, threads=self.workers)
        self._fftw_bw = pyfftw.FFTW(self._spec, self._real, axes=(0, 1, 2), direction="FFTW_BACKWARD",
                                    flags=flags + ("FFTW_DESTROY_INPUT",), threads=self.workers)
        self._fftw = pyfftw
        self.inverse_scale = 1.0 / float(np.prod(self.shape))
        self.backend = "fftw"

    def empty(self, shape, dtype):
        """An uninitialised array on the device, aligned for this library's plans."""
        if self._fftw is not None:
            return self._fftw.empty_aligned(shape, dtype)
        return self.xp.empty(shape, dtype)

    def zeros(self, shape, dtype):
        out = self.empty(shape, dtype)
        out[...] = 0
        return out

    def forward(self, x, out=None):
        """The half spectrum of ``x``, into ``out`` (an ``empty`` half-spectrum array) or the shared buffer."""
        if self._fftw is not None:
            return self._fftw_fw(x, self._spec if out is None else out)
        if self._pp is None:
            return self._into(self._fft.rfftn(x, **self._kw()), out)
        return self._pp.r2c(x, (0, 1, 2), True, 0, self._spec if out is None else out, self.workers)

    def inverse(self, spec, out=None):
        """The real field of ``spec`` times ``1/N`` (``inverse_scale`` = 1) or times 1 (``inverse_scale`` = 1/N),
        into ``out`` (an ``empty`` real grid) or the shared buffer."""
        if self._fftw is not None:
            return self._fftw_bw(spec, self._real if out is None else out, normalise_idft=False)
        if self._pp is None:
            return self._into(self._fft.irfftn(spec, s=self.shape, **self._kw()), out)
        self._pp.c2c(spec, (0, 1), False, 2, spec, self.workers)  # in place: ``spec`` is consumed
        return self._pp.c2r(spec, (2,), self.shape[2], False, 2, self._real if out is None else out,
                            self.workers)

    @staticmethod
    def _into(result, out):
        if out is None:
            return result
        out[...] = result
        return out

    def _kw(self) -> dict:
        return {"workers": self.workers} if self.xp is np else {}


def pml_profile(n: int, dx_m: float, dt_s: float, c_ref_m_s: float, size: int, alpha: float,
                staggered: bool) -> np.ndarray:
    """1D PML factor exp(−α (c/dx) ((i − …)/size)⁴ dt/2), as ``kwave.utils.pml.get_pml`` (float64, length n)."""
    out = np.ones(n)
    if size == 0 or alpha == 0:
        return out
    x = np.arange(1, size + 1, dtype=float) + (0.5 if staggered else 0.0)
    left = alpha * (c_ref_m_s / dx_m) * (((x - size - 1) / (0 - size)) ** 4)
    right = alpha * (c_ref_m_s / dx_m) * ((x / size) ** 4)
    out[:size] = np.exp(-left * dt_s / 2)
    out[n - size:] = np.exp(-right * dt_s / 2)
    return out


def staggered_density(rho0: np.ndarray, axis: int) -> np.ndarray:
    """ρ0 at the staggered (velocity) points: mean of neighbours along ``axis``, last cell copied (k-Wave)."""
    lo = [slice(None)] * rho0.ndim
    hi = [slice(None)] * rho0.ndim
    lo[axis], hi[axis] = slice(None, -1), slice(1, None)
    last = [slice(None)] * rho0.ndim
    last[axis] = slice(-1, None)
    return np.concatenate([0.5 * (rho0[tuple(lo)] + rho0[tuple(hi)]), rho0[tuple(last)]], axis=axis)


def db_to_neper(alpha_db: np.ndarray, y: float) -> np.ndarray:
    """dB/(MHz^y cm) → Np/((rad/s)^y m) (``kwave.utils.conversion.db2neper``)."""
    return 100.0 * alpha_db * (1e-6 / (2.0 * math.pi)) ** y / (20.0 * np.log10(np.exp(1)))


def wavenumbers(shape, spacings_m) -> list[np.ndarray]:
    """Angular wavenumbers (rad/m) of the half spectrum: fftfreq on the first axes, rfftfreq on the last,
    each shaped to broadcast. (At an even last axis' Nyquist bin rfftfreq gives +π/d where fftfreq gives
    −π/d; the staggered derivative i k e^{±i k d/2} is the same real number at both.)"""
    ks = []
    for axis, (n, d) in enumerate(zip(shape, spacings_m)):
        f = np.fft.rfftfreq(n, d) if axis == len(shape) - 1 else np.fft.fftfreq(n, d)
        bshape = [1] * len(shape)
        bshape[axis] = f.size
        ks.append((2 * np.pi * f).reshape(bshape))
    return ks


def kspace_operators(shape, spacings_m, dt_s: float, c_ref_m_s: float):
    """(κ, source κ, gradient shifts, divergence shifts) on the half spectrum, float64/complex128.

    κ = sinc(c_ref |k| dt/2) and the source filter cos(c_ref |k| dt/2) are full half-spectrum arrays; the
    staggered derivatives i k_i e^{±i k_i d_i/2} stay 1D (broadcast), so κ is applied once per spectrum.
    """
    ks = wavenumbers(shape, spacings_m)
    k_mag = np.sqrt(sum(k ** 2 for k in ks))
    kappa = np.sinc(c_ref_m_s * k_mag * dt_s / 2 / np.pi)
    source_kappa = np.cos(c_ref_m_s * k_mag * dt_s / 2)
    grad = [1j * k * np.exp(1j * k * d / 2) for k, d in zip(ks, spacings_m)]
    div = [1j * k * np.exp(-1j * k * d / 2) for k, d in zip(ks, spacings_m)]
    return kappa, source_kappa, grad, div


def _rows(arr, sl: slice):
    """``arr`` restricted to the slab ``sl`` of axis 0 (a profile broadcast along axis 0 is kept whole)."""
    return arr if arr.shape[0] == 1 else arr[sl]


class Slabs:
    """Runs an element-wise update on slabs of axis 0 in ``workers`` threads (NumPy releases the GIL in
    ufuncs), so the updates use the same cores as the transforms; one thread (or the GPU) runs it whole."""

    def __init__(self, n0: int, workers: int) -> None:
        edges = np.linspace(0, n0, max(1, min(int(workers), n0)) + 1).astype(int)
        self.slices = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
        self._pool = ThreadPoolExecutor(len(self.slices) - 1) if len(self.slices) > 1 else None

    def run(self, fn) -> None:
        if self._pool is None:
            fn(slice(None))
            return
        futures = [self._pool.submit(fn, sl) for sl in self.slices[1:]]
        fn(self.slices[0])
        for future in futures:
            future.result()


class KSpaceEngine:
    """k-wave-python's time step on preallocated arrays; ``step()`` advances dt, ``p`` is the pressure (Pa).

    Built from the *padded* medium (PML inside these arrays, as k-wave-python's grid): ``sound_speed`` (m/s),
    ``density`` (kg/m³), ``alpha_coeff`` (dB/(MHz^y cm), None = lossless; y = ``alpha_power`` must be 2:
    k-Wave's Stokes term, which ``alpha_mode='no_dispersion'`` also gives), the bowl ``weights`` on the same
    grid (``sim.source.bowl_grid_weights``) and the drive ``signal`` s(n·dt) in Pa (``sim.source.drive_signal``;
    no source after its end) — or lists of both, one signal per weights (``sim.source.source_terms``: an
    annular array is two terms, the sin and cos parts of its ring drives), injected as Σ_k s_k(t)·w_k. Drop-in for ``Simulation`` in ``sim.solver._time_loop``: ``xp``, ``p``, ``t``.
    """

    def __init__(self, sound_speed, density, alpha_coeff, alpha_power: float, weights, signal,
                 config: EngineConfig) -> None:
        self.config = config
        self.dtype = np.dtype(config.dtype).type
        self.shape = tuple(int(n) for n in np.shape(sound_speed))
        weights, signal = as_terms(weights, signal)
        self._check_shapes(density, alpha_coeff, weights)
        self.fft_workers = int(config.fft_workers or default_fft_workers()) if config.device == "cpu" else None
        self.fft = Transforms(self.shape, self.dtype, config.device, self.fft_workers or 1, config.fft_library)
        self.xp = xp = self.fft.xp
        self.fused = self._init_kernels(config)  # sim.kernels.FusedKernels or None; the lock-in uses it too
        self.kernels = "numba" if self.fused is not None else "numpy"
        c0 = np.asarray(sound_speed, self.dtype)
        self.c_ref = float(c0.max()) if config.c_ref_m_s is None else float(config.c_ref_m_s)
        self.dt, self.spacing = float(config.dt_s), config.spacings_m
        pml, pml_sg = self._init_operators()
        self._init_medium(c0, np.asarray(density, self.dtype), alpha_coeff, float(alpha_power), pml, pml_sg)
        self._init_source(c0, weights, signal)
        zeros = self.fft.zeros  # aligned for the transforms' plans
        self.p = zeros(self.shape, self.dtype)
        self.u = [zeros(self.shape, self.dtype) for _ in range(N_DIM)]
        self.rho = [zeros(self.shape, self.dtype) for _ in range(N_DIM)]  # split density (one PML each)
        self._init_buffers()
        self._slabs = Slabs(self.shape[0], self.fft_workers or 1)
        self.t = 0

    def _init_buffers(self) -> None:
        """Work arrays of a step. Fused: three spectra and three real grids (the three axes' transforms of
        a stage are done before its one update pass; the transforms' own real buffer is the first grid).
        NumPy: one spectrum, the per-step source and (absorbing) the divergence total."""
        fft = self.fft
        if self.fused is not None:
            # F[p] stays in the transforms' own buffer: the gradient pass must not write over its input
            self._specs = [fft.empty(fft.half_shape, fft.complex_dtype) for _ in range(N_DIM)]
            self._work = [fft.inverse(self._specs[0])] + [fft.empty(self.shape, self.dtype)
                                                          for _ in range(N_DIM - 1)]
            self._scratch = self._work[1]  # free when the source terms are mixed, before the transforms
            return
        self._spec = fft.empty(fft.half_shape, fft.complex_dtype)
        self._src_step = self._scratch = self.xp.empty(self.shape, self.dtype)
        if self._absorb is not None:
            self._div_total = self.xp.empty(self.shape, self.dtype)

    def _init_kernels(self, config: EngineConfig):
        """``sim.kernels.FusedKernels`` on the CPU when Numba is there (or asked for), else None (NumPy)."""
        from tfus.sim import kernels  # noqa: PLC0415

        if config.device == "gpu" or config.kernels == "numpy":
            if config.kernels == "numba":
                raise ValueError("`kernels='numba'` runs on the CPU only (the GPU uses CuPy's element-wise ops)")
            return None
        if config.kernels == "auto" and not kernels.available():
            return None
        return kernels.FusedKernels(self.dtype)

    def _check_shapes(self, density, alpha_coeff, weights) -> None:
        if len(self.shape) != N_DIM:
            raise ValueError(f"`sound_speed` must be a 3D array, got shape {self.shape}")
        for name, arr in (("density", density), ("alpha_coeff", alpha_coeff), *(("weights", w) for w in weights)):
            if arr is not None and np.shape(arr) != self.shape:
                raise ValueError(f"`{name}` shape {np.shape(arr)} differs from `sound_speed` {self.shape}")

    def _init_operators(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """κ and the shift-derivatives on the device; returns the 1D PML profiles (float64, broadcast)."""
        cfg, xp, cplx = self.config, self.xp, self.fft.complex_dtype
        kappa, self._source_kappa, grad, div = kspace_operators(self.shape, self.spacing, self.dt, self.c_ref)
        # every spectrum is multiplied by κ exactly once before its inverse: the inverse's scale goes here
        self._kappa = xp.asarray((kappa * self.fft.inverse_scale).astype(self.dtype))
        self._grad = [xp.asarray(g.astype(cplx)) for g in grad]
        self._div = [xp.asarray(d.astype(cplx)) for d in div]
        pml, pml_sg = [], []
        for axis, (n, d) in enumerate(zip(self.shape, self.spacing)):
            bshape = [1] * N_DIM
            bshape[axis] = n
            for staggered, out in ((False, pml), (True, pml_sg)):
                prof = pml_profile(n, d, self.dt, self.c_ref, int(cfg.pml_size), float(cfg.pml_alpha), staggered)
                out.append(prof.reshape(bshape))
        return pml, pml_sg

    def _init_medium(self, c0, rho0, alpha_coeff, alpha_power: float, pml, pml_sg) -> None:
        """Coefficients with the PML folded in: u ← pml'²·u − (pml'·dt/ρ0')·∇p, ρ ← pml²·ρ − (pml·dt·ρ0)·∇·u
        (k-Wave's pml·(pml·u − …) with one pass fewer per axis). The fused kernels form pml·(dt·ρ0) from the
        1D profile and one grid; the NumPy updates take a grid per axis."""
        xp, dt, real = self.xp, self.dt, self.dtype
        self._c0_sq = xp.asarray(c0 ** 2)
        self._pml2 = [xp.asarray((q * q).astype(real)) for q in pml]
        self._pml2_sg = [xp.asarray((q * q).astype(real)) for q in pml_sg]
        self._u_coef = [xp.asarray((q * (dt / staggered_density(rho0, i))).astype(real))
                        for i, q in enumerate(pml_sg)]
        if self.fused is not None:
            self._pml = [q.astype(real) for q in pml]
            self._rho_dt = (dt * rho0).astype(real)
        else:
            self._rho_coef = [xp.asarray((q * (dt * rho0)).astype(real)) for q in pml]
        self._absorb = self._div_total = None
        if alpha_coeff is None or not np.any(np.asarray(alpha_coeff) != 0):
            return
        if abs(alpha_power - 2.0) > 1e-10:  # y ≠ 2 needs k-Wave's fractional Laplacians (two more FFTs)
            raise ValueError(f"`alpha_power` must be 2 (Stokes absorption), got {alpha_power}")
        tau = -2.0 * db_to_neper(np.asarray(alpha_coeff, np.float64), alpha_power) * c0
        self._absorb = xp.asarray((tau * rho0).astype(real))  # p gets c0²·τ·ρ0·Σ∇·u

    def _init_source(self, c0: np.ndarray, weights, signal) -> None:
        """S = F⁻¹[cos(c_ref|k|dt/2)·F[w·2dt/(3 c0)]] once (float64 on the host); per step s(t)·S/d_i."""
        import scipy.fft as sfft  # noqa: PLC0415

        workers = self.fft_workers or default_fft_workers()
        scale = 2.0 * self.dt / (N_DIM * c0.astype(np.float64))
        self._sources, self._signals, support = [], [], None
        for w in weights:
            w = np.asarray(w, np.float64)
            support = (w != 0) if support is None else (support | (w != 0))
            spec = sfft.rfftn(w * scale, workers=workers)
            spec *= self._source_kappa
            self._sources.append(self.xp.asarray(sfft.irfftn(spec, s=self.shape, workers=workers)
                                                 .astype(self.dtype)))
        del self._source_kappa
        self._signals = [np.asarray(sg, np.float64).ravel() for sg in signal]
        self.n_source_points = int(np.count_nonzero(support))
        self._mix = self.xp.empty(self.shape, self.dtype) if len(self._sources) > 1 else None
        self._isotropic = len(set(self.spacing)) == 1

    def _source_now(self):
        """(field, scalar) with field·scalar = Σ_k s_k(t)·S_k at this step; (None, 0.0) when no source."""
        values = [float(sg[self.t]) if self.t < sg.size else 0.0 for sg in self._signals]
        live = [(src, v) for src, v in zip(self._sources, values) if v != 0.0]
        if not live:
            return None, 0.0
        if len(live) == 1:
            return live[0]
        mix = self._mix
        self._slabs.run(lambda sl: self._mix_rows(sl, live))
        return mix, 1.0

    def _mix_rows(self, sl: slice, live) -> None:
        out, scratch = self._mix[sl], self._scratch[sl]  # free until the step's transforms and updates
        self.xp.multiply(live[0][0][sl], live[0][1], out=out)
        for src, v in live[1:]:
            self.xp.multiply(src[sl], v, out=scratch)
            out += scratch

    def step(self) -> "KSpaceEngine":
        """Advance one time step (p(t) → p(t + dt)), like ``Simulation.step()``."""
        src, s = self._source_now()
        if self.fused is not None:
            self._fused_step(src, s)
        else:
            self._momentum()
            self._mass(src, s)
            self._state()
        self.t += 1
        return self

    def _fused_step(self, src, s: float) -> None:
        """The same update as ``_momentum``/``_mass``/``_state`` in four passes (``sim.kernels``): gradient
        spectra, velocities, divergence spectra, densities with the pressure; the transforms in between."""
        k, fft, specs, work = self.fused, self.fft, self._specs, self._work
        k.gradient_spectra(fft.forward(self.p), self._kappa, self._grad, specs)
        for spec, out in zip(specs, work):
            fft.inverse(spec, out)
        k.velocity(self.u, self._pml2_sg, self._u_coef, work)
        for u, spec in zip(self.u, specs):
            fft.forward(u, spec)
        k.divergence_spectra(specs, self._kappa, self._div)
        for spec, out in zip(specs, work):
            fft.inverse(spec, out)
        k.mass_state(self.rho, self._pml2, self._pml, self._rho_dt, work,
                     self._sources[0] if src is None else src, [s / d for d in self.spacing], self._c0_sq,
                     self._absorb, self.p)

    def _momentum(self) -> None:
        xp, spec = self.xp, self.fft.forward(self.p)
        self._slabs.run(lambda sl: spec[sl].__imul__(_rows(self._kappa, sl)))  # κ once for the gradients
        for i in range(N_DIM):
            grad_op, out = self._grad[i], self._spec
            self._slabs.run(lambda sl: xp.multiply(spec[sl], _rows(grad_op, sl), out=out[sl]))
            grad = self.fft.inverse(self._spec)
            u, coef, pml2 = self.u[i], self._u_coef[i], self._pml2_sg[i]

            def update(sl, grad=grad, u=u, coef=coef, pml2=pml2):
                g, v = grad[sl], u[sl]
                g *= _rows(coef, sl)
                v *= _rows(pml2, sl)
                v -= g
            self._slabs.run(update)

    def _mass(self, source, s: float) -> None:
        xp, src = self.xp, self._src_step
        if s != 0.0 and self._isotropic:  # the same source term for the three density components
            self._slabs.run(lambda sl: xp.multiply(source[sl], s / self.spacing[0], out=src[sl]))
        for i in range(N_DIM):
            spec, div_op = self.fft.forward(self.u[i]), self._div[i]

            def filt(sl, spec=spec, div_op=div_op):
                q = spec[sl]
                q *= _rows(self._kappa, sl)
                q *= _rows(div_op, sl)
            self._slabs.run(filt)
            div = self.fft.inverse(spec)
            self._slabs.run(lambda sl, i=i, div=div: self._mass_rows(sl, i, div, source, s))

    def _mass_rows(self, sl: slice, i: int, div, source, s: float) -> None:
        xp, d = self.xp, div[sl]
        if self._div_total is not None:
            if i == 0:
                xp.copyto(self._div_total[sl], d)
            else:
                self._div_total[sl] += d
        d *= _rows(self._rho_coef[i], sl)
        rho = self.rho[i][sl]
        rho *= _rows(self._pml2[i], sl)
        rho -= d
        if s != 0.0:
            src = self._src_step[sl]
            if not self._isotropic:
                xp.multiply(source[sl], s / self.spacing[i], out=src)
            rho += src

    def _state(self) -> None:
        def update(sl):
            p = self.p[sl]
            self.xp.add(self.rho[0][sl], self.rho[1][sl], out=p)
            p += self.rho[2][sl]
            if self._absorb is not None:
                total = self._div_total[sl]
                total *= self._absorb[sl]
                p += total
            p *= self._c0_sq[sl]
        self._slabs.run(update)

    def run(self, n_steps: int) -> "KSpaceEngine":
        for _ in range(int(n_steps)):
            self.step()
        return self
