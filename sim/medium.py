"""HU → acoustic properties (the TFUScapes / Aubry-2003 porosity family).

Skull voxels are those with HU above ``skull_threshold_hu``; everything else is water/soft tissue
(the coupling medium and the brain are both treated as water, as in TFUScapes and the ITRUSST water
benchmarks). Inside the skull, with HU clipped to [hu_min, hu_max]:

    ρ = ρmin + (ρmax − ρmin)·HU/HUmax
    c = cmin + (cmax − cmin)·(ρ − ρmin)/(ρmax − ρmin)
    α = αmin + (αmax − αmin)·(1 − sqrt((HU − HUmin)/(HUmax − HUmin)))

Default constants and their sources
-----------------------------------
* ``hu_max = 2000``: TFUScapes normalises CT over [0, 2000] HU (DeepTFUS reproductions); also the
  clamp of Marsac et al. 2017 (Int. J. Hyperthermia 33:635) as implemented in PRESTUS.
* ``skull_threshold_hu = hu_min = 300``: the bone threshold of Marsac 2017 / Yaakub et al. 2023
  (BRIC TUS tools, Brain Stim. 16:75) and the lower HU bound of the Mueller 2017 absorption law.
* ``ρmin = 1000``, ``cmin = 1500``: water (ITRUSST benchmark, Aubry et al. 2022, JASA 152:1003, Table I).
* ``cmax = 3100`` m/s: the upper sound speed of the Marsac/Bancel mapping used by Yaakub 2023
  (c ∈ [1500, 3100]); ``ρmax = 2050`` kg/m³ is chosen so that a typical cortical HU of 1625 gives
  the ITRUSST cortical bone, **2800 m/s and 1853 kg/m³** (HU 1500 → 2700 m/s, 1788 kg/m³; HU 1800 →
  2940 m/s, 1945 kg/m³). The porosity family ties c linearly to ρ through the water point, so it
  cannot also pass through ITRUSST trabecular bone (2300 m/s, 1700 kg/m³): HU 1000 gives its sound
  speed (2300 m/s) with a lower density (1525 kg/m³).
* α in dB/(MHz^y cm) with **y = 2** (``alpha_power``): the ITRUSST k-Wave reference encoded its
  500 kHz absorption as α₀ = α(0.5 MHz)/0.25 with y = 2, where k-Wave's dispersion term tan(πy/2)
  vanishes, so the bone sound speed stays exactly the tabulated one (no Kramers–Kronig drift; the
  solver should also pass ``alpha_mode='no_dispersion'``). ``αmin = 16``, ``αmax = 34.8``
  dB/(MHz² cm) are the end points of Mueller et al. 2017 (J. Neural Eng. 14:066012; 4 and 8.7 dB/cm at
  500 kHz, as used by PRESTUS) converted to y = 2 (α₀ = α₅₀₀/0.25). The curve between them is the
  TFUScapes form above, 1 − sqrt(x), not Mueller's sqrt(1 − x). HU 1625 → 18.2 (4.6 dB/cm at 500 kHz;
  ITRUSST cortical: 4.0), HU 1000 → 22.7 (5.7 dB/cm; ITRUSST trabecular: 8.0).
* Water absorption is negligible (0; ITRUSST water is lossless).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class MediumConfig:
    """Constants of the HU → (ρ, c, α) mapping. SI units; α in dB/(MHz^y cm) at power ``alpha_power``.

    Sources of each default: see the module docstring.
    """

    skull_threshold_hu: float = 300.0
    hu_min: float = 300.0
    hu_max: float = 2000.0
    density_min_kg_m3: float = 1000.0
    density_max_kg_m3: float = 2050.0
    sound_speed_min_m_s: float = 1500.0
    sound_speed_max_m_s: float = 3100.0
    alpha_min_db_mhz_y_cm: float = 16.0
    alpha_max_db_mhz_y_cm: float = 34.8
    alpha_power: float = 2.0
    water_sound_speed_m_s: float = 1500.0
    water_density_kg_m3: float = 1000.0
    water_alpha_db_mhz_y_cm: float = 0.0

    def __post_init__(self) -> None:
        if not self.hu_max > self.hu_min:
            raise ValueError(f"`hu_max` must exceed `hu_min`, got {self.hu_max} <= {self.hu_min}")
        if not self.density_max_kg_m3 > self.density_min_kg_m3 > 0:
            raise ValueError("`density_max_kg_m3` must exceed `density_min_kg_m3` > 0, got "
                             f"{self.density_max_kg_m3}, {self.density_min_kg_m3}")
        if not self.sound_speed_max_m_s >= self.sound_speed_min_m_s > 0:
            raise ValueError("`sound_speed_max_m_s` must be >= `sound_speed_min_m_s` > 0")
        if not 0.0 < self.alpha_power <= 3.0:
            raise ValueError(f"`alpha_power` must be in (0, 3], got {self.alpha_power}")
        if min(self.alpha_min_db_mhz_y_cm, self.alpha_max_db_mhz_y_cm, self.water_alpha_db_mhz_y_cm) < 0:
            raise ValueError("absorption coefficients must be >= 0")
        if self.water_sound_speed_m_s <= 0 or self.water_density_kg_m3 <= 0:
            raise ValueError("`water_sound_speed_m_s` and `water_density_kg_m3` must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Medium:
    """Acoustic maps on a grid (X, Y, Z), float32: c (m/s), ρ (kg/m³), α₀ (dB/(MHz^y cm)); y scalar."""

    sound_speed_m_s: np.ndarray
    density_kg_m3: np.ndarray
    alpha_coeff_db_mhz_y_cm: np.ndarray
    alpha_power: float

    def __post_init__(self) -> None:
        shape = np.shape(self.sound_speed_m_s)
        for name in ("density_kg_m3", "alpha_coeff_db_mhz_y_cm"):
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"`{name}` has shape {np.shape(getattr(self, name))}, expected {shape}")

    @property
    def max_sound_speed_m_s(self) -> float:
        return float(np.max(self.sound_speed_m_s))

    @property
    def min_sound_speed_m_s(self) -> float:
        return float(np.min(self.sound_speed_m_s))

    def alpha_db_cm_at(self, frequency_hz: float) -> np.ndarray:
        """Absorption in dB/cm at ``frequency_hz`` (α₀·f_MHz^y)."""
        return self.alpha_coeff_db_mhz_y_cm * (frequency_hz / 1e6) ** self.alpha_power


def hu_for_sound_speed(sound_speed_m_s: float, medium_config: MediumConfig | None = None) -> float:
    """The bone HU that :func:`hu_to_medium` turns into ``sound_speed_m_s`` (its inverse on c).

    The map ties ρ to c, so the density at that HU is the map's, not an independent value. ``ValueError`` when
    the sound speed lies outside the map's bone range (c at ``hu_min`` … c at ``hu_max``).
    """
    cfg = medium_config or MediumConfig()
    span = cfg.sound_speed_max_m_s - cfg.sound_speed_min_m_s
    hu = cfg.hu_max * (sound_speed_m_s - cfg.sound_speed_min_m_s) / span if span > 0 else float("nan")
    if not (np.isfinite(hu) and max(cfg.hu_min, cfg.skull_threshold_hu) < hu <= cfg.hu_max):
        raise ValueError(f"sound speed {sound_speed_m_s:g} m/s is outside the bone range of the HU map "
                         f"({cfg.sound_speed_min_m_s + span * cfg.hu_min / cfg.hu_max:g}–"
                         f"{cfg.sound_speed_max_m_s:g} m/s)")
    return float(hu)


def hu_to_medium(hu: np.ndarray, medium_config: MediumConfig | None = None,
                 frequency_hz: float | None = None) -> Medium:
    """Map HU (any shape) to a :class:`Medium` with the TFUScapes/Aubry family (module docstring).

    The constants are frequency-independent power-law coefficients (α = α₀·f^y), so ``frequency_hz`` is
    only validated here (it must be positive) and kept for callers that convert to dB/cm.
    """
    cfg = medium_config or MediumConfig()
    if frequency_hz is not None and not (np.isfinite(frequency_hz) and frequency_hz > 0):
        raise ValueError(f"`frequency_hz` must be > 0, got {frequency_hz}")
    hu = np.asarray(hu, dtype=np.float32)
    if not np.all(np.isfinite(hu)):
        raise ValueError("`hu` has NaN/inf values")
    skull = hu > cfg.skull_threshold_hu
    h = np.clip(hu, cfg.hu_min, cfg.hu_max)
    rho_span = cfg.density_max_kg_m3 - cfg.density_min_kg_m3
    rho = cfg.density_min_kg_m3 + rho_span * h / cfg.hu_max
    c = cfg.sound_speed_min_m_s + (cfg.sound_speed_max_m_s - cfg.sound_speed_min_m_s) * (
        rho - cfg.density_min_kg_m3) / rho_span
    porosity = 1.0 - np.sqrt((h - cfg.hu_min) / (cfg.hu_max - cfg.hu_min))
    alpha = cfg.alpha_min_db_mhz_y_cm + (cfg.alpha_max_db_mhz_y_cm - cfg.alpha_min_db_mhz_y_cm) * porosity
    f32 = np.float32
    return Medium(
        sound_speed_m_s=np.where(skull, c, cfg.water_sound_speed_m_s).astype(f32),
        density_kg_m3=np.where(skull, rho, cfg.water_density_kg_m3).astype(f32),
        alpha_coeff_db_mhz_y_cm=np.where(skull, alpha, cfg.water_alpha_db_mhz_y_cm).astype(f32),
        alpha_power=float(cfg.alpha_power),
    )
