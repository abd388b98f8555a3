"""Simulation configuration: frozen, validated, hashable into stable sample keys.

Units: mm where people type them (spacing, transducer geometry), Hz, Pa. ``SimConfig.key()`` is the sha256
of the sorted JSON of ``to_dict()`` less the ``preset`` label and the ``engine`` (both engines run the
same scheme); dataset sample keys are built from it, so a config that changes in any
physical way gives new samples and an identical one is recognised as done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfus.sim.medium import MediumConfig

WATER_SOUND_SPEED_M_S = 1500.0


@dataclass(frozen=True)
class TransducerConfig:
    """A spherically focused bowl: one element (``rings_mm`` empty) or an annular array of rings on it.

    Arrays (``sim.transducers``): ring ``r`` spans the projected diameters ``rings_mm[r]`` (mm), driven with
    ``amplitude_pa · ring_amplitudes[r]`` (default 1) and phase ``ring_phases()[r]``: the explicit
    ``ring_phases_rad``, or the geometric steering phases for ``focal_distance_mm`` (from the exit plane,
    which lies ``exit_plane_to_focus_mm`` before the geometric focus; None: the rim plane), or all 0.
    """

    frequency_hz: float = 250e3
    roc_mm: float = 50.0          # radius of curvature (geometric focal distance from the apex)
    aperture_mm: float = 40.0     # aperture diameter
    amplitude_pa: float = 60e3    # source surface pressure amplitude
    name: str = "bowl"            # library name (sim.transducers.LIBRARY) or "custom"; a label
    rings_mm: tuple = ()          # ((inner, outer) projected diameter, mm) per ring; () = one element
    ring_amplitudes: tuple = ()   # relative amplitude per ring; () = all 1
    ring_phases_rad: tuple = ()   # explicit phase per ring; () = from focal_distance_mm, else in phase
    focal_distance_mm: float | None = None       # steering: focus this far past the exit plane (on the axis)
    exit_plane_to_focus_mm: float | None = None  # exit plane's distance before the geometric focus
    focal_range_mm: tuple | None = None          # the device's steerable range of focal_distance_mm
    steering: str = "peak"        # "peak": the on-axis peak (O'Neil, water) at focal_distance_mm; "geometric"

    def __post_init__(self) -> None:
        for name in ("rings_mm", "ring_amplitudes", "ring_phases_rad", "focal_range_mm"):
            value = getattr(self, name)
            if isinstance(value, list) or (isinstance(value, tuple) and name == "rings_mm"):
                value = tuple(tuple(float(x) for x in v) if name == "rings_mm" else float(v) for v in value)
                object.__setattr__(self, name, value)
        self._check_bowl()
        self._check_array()

    def _check_array(self) -> None:
        from tfus.sim.transducers import check_rings  # noqa: PLC0415

        n = len(self.rings_mm)
        if self.steering not in ("peak", "geometric"):
            raise ValueError(f"`transducer.steering` must be 'peak' or 'geometric', got {self.steering!r}")
        check_rings(self.rings_mm, self.roc_mm, self.aperture_mm, "`transducer.rings_mm`")
        for name in ("ring_amplitudes", "ring_phases_rad"):
            values = getattr(self, name)
            if values and len(values) != n:
                raise ValueError(f"`transducer.{name}` has {len(values)} values for {n} rings")
        if any(a < 0 for a in self.ring_amplitudes) or (self.ring_amplitudes and not any(self.ring_amplitudes)):
            raise ValueError("`transducer.ring_amplitudes` must be >= 0 and not all 0")
        if self.focal_distance_mm is not None:
            if not n:
                raise ValueError("`focal_distance_mm` (steering) needs an annular array (`rings_mm`)")
            if self.ring_phases_rad:
                raise ValueError("give `focal_distance_mm` or `ring_phases_rad`, not both")
            lo, hi = self.focal_range_mm or (0.0, float("inf"))
            if not lo <= self.focal_distance_mm <= hi:
                raise ValueError(f"`focal_distance_mm` {self.focal_distance_mm} is outside transducer "
                                 f"{self.name!r}'s steering range {lo:g}-{hi:g} mm from the exit plane")

    @property
    def is_array(self) -> bool:
        return len(self.rings_mm) > 0

    def ring_phases(self) -> tuple[float, ...]:
        """Phase per ring (rad): explicit, steered to ``focal_distance_mm``, or all 0."""
        if self.ring_phases_rad:
            return tuple(float(x) for x in self.ring_phases_rad)
        if self.focal_distance_mm is None:
            return (0.0,) * len(self.rings_mm)
        from tfus.sim.transducers import peak_steering_phases, steering_phases  # noqa: PLC0415

        args = (self.roc_mm, self.aperture_mm, self.rings_mm, self.exit_plane_to_focus_mm, self.focal_distance_mm,
                self.frequency_hz)
        phases = steering_phases(*args) if self.steering == "geometric" else peak_steering_phases(*args)[0]
        return tuple(float(x) for x in phases)

    def ring_drive(self) -> tuple[complex, ...]:
        """Complex drive per ring, relative to ``amplitude_pa``: a_r · e^{iφ_r}."""
        amps = self.ring_amplitudes or (1.0,) * len(self.rings_mm)
        return tuple(complex(a * np.exp(1j * p)) for a, p in zip(amps, self.ring_phases()))

    @classmethod
    def from_library(cls, name_or_path: str, amplitude_pa: float = 60e3,
                     focal_distance_mm: float | None = None) -> "TransducerConfig":
        """A named transducer of ``sim.transducers.LIBRARY`` (or a custom YAML file), optionally steered."""
        from tfus.sim.transducers import load_transducer  # noqa: PLC0415

        spec = load_transducer(name_or_path)
        return cls(frequency_hz=spec.frequency_hz, roc_mm=spec.roc_mm, aperture_mm=spec.aperture_mm,
                   amplitude_pa=amplitude_pa, name=spec.name, rings_mm=spec.rings_mm,
                   focal_distance_mm=focal_distance_mm, exit_plane_to_focus_mm=spec.exit_plane_to_focus_mm,
                   focal_range_mm=spec.focal_range_mm)

    def _check_bowl(self) -> None:
        if not 20e3 <= self.frequency_hz <= 5e6:
            raise ValueError(f"`frequency_hz` must be in [20 kHz, 5 MHz], got {self.frequency_hz}")
        if self.roc_mm <= 0:
            raise ValueError(f"`roc_mm` must be > 0, got {self.roc_mm}")
        if self.aperture_mm <= 0:
            raise ValueError(f"`aperture_mm` must be > 0, got {self.aperture_mm}")
        if self.aperture_mm > 2 * self.roc_mm:
            raise ValueError(f"`aperture_mm` ({self.aperture_mm}) must not exceed twice `roc_mm` "
                             f"({self.roc_mm}): no such spherical bowl")
        if self.amplitude_pa <= 0:
            raise ValueError(f"`amplitude_pa` must be > 0, got {self.amplitude_pa}")

    @property
    def wavelength_water_mm(self) -> float:
        return WATER_SOUND_SPEED_M_S / self.frequency_hz * 1e3


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines one steady-state simulation besides the CT and the placement."""

    transducer: TransducerConfig = field(default_factory=TransducerConfig)
    medium: MediumConfig = field(default_factory=MediumConfig)
    spacing_mm: float = 1.2
    window_shape: tuple[int, int, int] | None = (64, 64, 64)  # None: the whole CT (or --crop-mm box)
    cfl: float = 0.3
    extra_cycles: float = 6.0       # drive periods after the slowest transit, to reach steady state
    lockin_periods: int = 2         # periods in each lock-in window (the last window is the result)
    steady_tol: float = 0.002       # stop once |A| changes < this (rel. L2) between windows; 0 = fixed length
    ramp_cycles: float = 2.0        # smooth start of the drive signal
    pml_size: int = 10              # PML cells, added outside the returned box
    pml_alpha: float = 2.0
    n_transducer_points: int = 1024  # points on the bowl surface stored with each sample
    standoff_mm: float = 5.0        # water gap between the scalp and the bowl's rim plane (placement)
    dtype: str = "float32"
    engine: str = "tfus"            # time stepper: "tfus" (sim.engine) or "kwave" (k-wave-python); not physics
    grid: str = "beam"              # window: "beam" (centred on each beam) or "subject" (one per subject, sim.subject_grid)
    aim_tilt_deg: float = 0.0       # planned placements: beam axis up to this far from the inward normal (0: along it)
    preset: str = "custom"

    def __post_init__(self) -> None:
        if isinstance(self.window_shape, list):
            object.__setattr__(self, "window_shape", tuple(self.window_shape))
        if not 0 < self.spacing_mm <= 10:
            raise ValueError(f"`spacing_mm` must be in (0, 10], got {self.spacing_mm}")
        if self.window_shape is not None:
            if len(self.window_shape) != 3 or any(int(n) != n or n < 8 for n in self.window_shape):
                raise ValueError(f"`window_shape` must be three integers >= 8, got {self.window_shape}")
        if not 0 < self.cfl <= 1:
            raise ValueError(f"`cfl` must be in (0, 1], got {self.cfl}")
        if self.extra_cycles < 0:
            raise ValueError(f"`extra_cycles` must be >= 0, got {self.extra_cycles}")
        if int(self.lockin_periods) != self.lockin_periods or self.lockin_periods < 1:
            raise ValueError(f"`lockin_periods` must be a positive integer, got {self.lockin_periods}")
        if not 0 <= self.steady_tol < 1:
            raise ValueError(f"`steady_tol` must be in [0, 1), got {self.steady_tol}")
        if self.ramp_cycles < 0:
            raise ValueError(f"`ramp_cycles` must be >= 0, got {self.ramp_cycles}")
        if self.pml_size < 4:
            raise ValueError(f"`pml_size` must be >= 4 cells, got {self.pml_size}")
        if self.n_transducer_points < 16:
            raise ValueError(f"`n_transducer_points` must be >= 16, got {self.n_transducer_points}")
        if self.standoff_mm < 0:
            raise ValueError(f"`standoff_mm` must be >= 0, got {self.standoff_mm}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"`dtype` must be 'float32' or 'float64', got {self.dtype!r}")
        if self.engine not in ("tfus", "kwave"):
            raise ValueError(f"`engine` must be 'tfus' or 'kwave', got {self.engine!r}")
        if self.grid not in ("beam", "subject"):
            raise ValueError(f"`grid` must be 'beam' (beam-centred windows) or 'subject' (one fixed window per "
                             f"subject), got {self.grid!r}")
        if not 0 <= self.aim_tilt_deg <= 45:
            raise ValueError(f"`aim_tilt_deg` must be in [0, 45], got {self.aim_tilt_deg}")
        if self.grid == "subject" and self.window_shape is None:
            raise ValueError("`grid: subject` needs `window_shape` (the fixed box every placement shares)")

    @property
    def points_per_wavelength_water(self) -> float:
        return self.transducer.wavelength_water_mm / self.spacing_mm

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["window_shape"] = list(self.window_shape) if self.window_shape is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SimConfig":
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown simulation config field(s): {', '.join(sorted(unknown))}")
        if "transducer" in d and isinstance(d["transducer"], dict):
            d["transducer"] = TransducerConfig(**d["transducer"])
        if "medium" in d and isinstance(d["medium"], dict):
            d["medium"] = MediumConfig(**d["medium"])
        if d.get("window_shape") is not None:
            d["window_shape"] = tuple(int(n) for n in d["window_shape"])
        return cls(**d)

    def key(self) -> str:
        """Stable sha256 of the physics (the preset's name is a label, the engine an implementation of the same
        scheme: neither changes what a sample means)."""
        d = self.to_dict()
        d.pop("preset", None)
        d.pop("engine", None)
        for name, default in _ARRAY_DEFAULTS.items():  # a single bowl keeps the keys it had before arrays
            if d["transducer"].get(name) == default:
                d["transducer"].pop(name)
        if not d.get("steady_tol"):  # fixed length: the run every key before this field described
            d.pop("steady_tol", None)
        if d.get("grid") == "beam":  # beam-centred windows keep the keys they had before the subject grid
            d.pop("grid")
        if not d.get("aim_tilt_deg"):  # normal-aimed placements keep their keys
            d.pop("aim_tilt_deg", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def replace(self, **changes) -> "SimConfig":
        return dataclasses.replace(self, **changes)


_ARRAY_DEFAULTS = {"name": "bowl", "rings_mm": (), "ring_amplitudes": (), "ring_phases_rad": (),
                   "focal_distance_mm": None, "exit_plane_to_focus_mm": None, "focal_range_mm": None,
                   "steering": "peak"}

PRESETS: dict[str, SimConfig] = {
    # Unit/integration tests: a 32³ window, seconds per simulation.
    "test": SimConfig(transducer=TransducerConfig(frequency_hz=200e3, roc_mm=30.0, aperture_mm=26.0),
                      spacing_mm=1.5, window_shape=(32, 32, 32), extra_cycles=4.0, cfl=0.5,
                      pml_size=8, n_transducer_points=256, preset="test"),
    # (cfl 0.5 for test/demo: the k-space correction is exact in water and the O'Neil check passes at 0.5 —
    #  docs/VALIDATION.md; in bone the absorbing stability limit shortens dt further, see sim.solver.)
    # CPU demo: 200 kHz (λ 7.5 mm), 1.5 mm (5 points per wavelength in water), 48³ = 72 mm box, R = D = 40 mm
    # (F-number 1). ~1 min per simulation on one free core; a 64³ box at 1.2 mm / 250 kHz took ~4x longer
    # (bone absorption limits dt to ~38 points per period there), too slow for `make demo`.
    "demo": SimConfig(transducer=TransducerConfig(frequency_hz=200e3, roc_mm=40.0, aperture_mm=40.0),
                      spacing_mm=1.5, window_shape=(48, 48, 48), cfl=0.5, extra_cycles=4.0,
                      n_transducer_points=1024, preset="demo"),
    # CPU datasets of a few hundred samples (docs/RESULTS.md): the test preset's physics and 48 mm box
    # (200 kHz, 1.5 mm, R = 30 mm, D = 26 mm), 1024 stored transducer points. ~20-25 s per simulation on
    # one core; 216 samples took 46 min on 2 workers (docs/RESULTS.md).
    "small": SimConfig(transducer=TransducerConfig(frequency_hz=200e3, roc_mm=30.0, aperture_mm=26.0),
                       spacing_mm=1.5, window_shape=(32, 32, 32), extra_cycles=4.0, cfl=0.5,
                       pml_size=8, n_transducer_points=1024, preset="small"),
    # Skull-fixed CPU datasets (issue "DeepTFUS where the transducer moves", docs/RESULTS.md): the small
    # preset's physics on one 48³ = 72 mm box per subject over the top of the head (sim.subject_grid); the
    # bowl moves over the vault inside it.
    "subject": SimConfig(transducer=TransducerConfig(frequency_hz=200e3, roc_mm=30.0, aperture_mm=26.0),
                         spacing_mm=1.5, window_shape=(48, 48, 48), extra_cycles=4.0, cfl=0.5,
                         pml_size=8, n_transducer_points=1024, grid="subject", preset="subject"),
    # Closer to practice on one CPU core: 250 kHz (λ 6 mm) at 1.0 mm = 6 points per wavelength in water, a
    # single-element bowl of R 63.2 mm / D 64 mm (the common 64 mm tFUS bowl geometry, F-number ~1), an
    # 88³ = 88 mm box (bowl + focus + margin). Cost measured with sim.engine: README's preset table.
    "practice": SimConfig(transducer=TransducerConfig(frequency_hz=250e3, roc_mm=63.2, aperture_mm=64.0),
                          spacing_mm=1.0, window_shape=(88, 88, 88), cfl=0.5, extra_cycles=4.0,
                          n_transducer_points=1024, preset="practice"),
    # The TFUScapes setting: 500 kHz, 0.5 mm (6 points per wavelength), 256³ crop; GPU or cluster.
    "tfuscapes": SimConfig(transducer=TransducerConfig(frequency_hz=500e3, roc_mm=64.0, aperture_mm=64.0),
                           spacing_mm=0.5, window_shape=(256, 256, 256), n_transducer_points=4096,
                           preset="tfuscapes"),
}


def get_preset(name: str) -> SimConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def load_sim_config(preset_or_path: str | Path) -> SimConfig:
    """A preset name, or a YAML/JSON file of SimConfig fields (optionally with ``base: PRESET``)."""
    text = str(preset_or_path)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"simulation config {text!r} is neither a preset "
                                f"({', '.join(PRESETS)}) nor an existing file")
    from tfus.sim.yamlfile import read_mapping  # noqa: PLC0415

    data = read_mapping(path, "SimConfig fields")
    base = get_preset(data.pop("base")).to_dict() if "base" in data else {}
    tr = data.get("transducer")
    if isinstance(tr, str):  # `transducer: ctx500` = a library transducer (sim.transducers)
        tr = {"library": tr}
    if isinstance(tr, dict) and "library" in tr:  # `{library: ctx500, focal_distance_mm: 50, ...}`
        tr = dict(tr)
        lib = TransducerConfig.from_library(tr.pop("library"), tr.pop("amplitude_pa", 60e3),
                                            tr.pop("focal_distance_mm", None))
        data["transducer"] = {**dataclasses.asdict(lib), **tr}
        base.pop("transducer", None)
    for sub in ("transducer", "medium"):
        if sub in data and sub in base:
            data[sub] = {**base[sub], **data[sub]}
    try:
        return SimConfig.from_dict({**base, **data})
    except TypeError as exc:
        raise ValueError(f"{path}: {exc}") from None


def with_overrides(config: SimConfig, *, frequency_hz: float | None = None, roc_mm: float | None = None,
                   aperture_mm: float | None = None, amplitude_pa: float | None = None,
                   spacing_mm: float | None = None, ppw: float | None = None,
                   whole_grid: bool = False, transducer: str | None = None,
                   focal_distance_mm: float | None = None) -> SimConfig:
    """``config`` with the transducer and grid settings a user overrides (None = keep).

    ``transducer``: a library name or YAML file (``sim.transducers``) replacing the preset's bowl (its
    frequency too, unless ``frequency_hz`` is given); ``focal_distance_mm``: steer the (array) transducer.

    ``ppw``: points per wavelength in water (sets the spacing; exclusive with ``spacing_mm``);
    ``whole_grid``: no fixed window (simulate the whole CT or a crop box given to ``simulate``).
    """
    if ppw is not None and spacing_mm is not None:
        raise ValueError("give `ppw` or `spacing_mm`, not both")
    if transducer is not None:
        config = config.replace(transducer=TransducerConfig.from_library(
            transducer, config.transducer.amplitude_pa, focal_distance_mm))
    elif focal_distance_mm is not None:
        config = config.replace(transducer=dataclasses.replace(config.transducer,
                                                               focal_distance_mm=focal_distance_mm))
    changes = {k: v for k, v in (("frequency_hz", frequency_hz), ("roc_mm", roc_mm),
                                 ("aperture_mm", aperture_mm), ("amplitude_pa", amplitude_pa)) if v is not None}
    transducer = dataclasses.replace(config.transducer, **changes)
    config = config.replace(transducer=transducer)
    if ppw is not None:
        if ppw <= 0:
            raise ValueError(f"`ppw` (--ppw) must be > 0, got {ppw}")
        config = config.replace(spacing_mm=transducer.wavelength_water_mm / ppw)
    elif spacing_mm is not None:
        config = config.replace(spacing_mm=spacing_mm)
    return config.replace(window_shape=None) if whole_grid else config
