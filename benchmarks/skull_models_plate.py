"""Focused-bowl transmission through a flat skull plate, analytic (sim.layered), for the bone models in use.

T = on-axis peak beyond the plate / the same bowl's peak in water, for plates 4–10 mm thick starting 20 mm
from the bowl apex (where tfus' placement puts the skull: 5 mm stand-off + rim + scalp), water on both sides.
Models: ITRUSST cortical bone (2800 m/s, 1850 kg/m³; what a pseudo-CT's dark bone was before), Pichardo 2011's
cortical bone at the frequency with its own density, and what the HU map gives at the pseudo-CT's cortical
HU (Pichardo's sound speed, the map's density). Absorption: the HU map's α at each model's HU (y = 2).

    python benchmarks/skull_models_plate.py [--frequency-khz 250] [--roc-mm 63.2] [--aperture-mm 64]
"""

from __future__ import annotations

import argparse

import numpy as np

from tfus.sim.layered import Layer, LayeredMedium, on_axis
from tfus.sim.medium import hu_for_sound_speed, hu_to_medium
from tfus.sim.pseudoct import PICHARDO_2011, PseudoCTConfig, bone_sound_speed_m_s

THICKNESS_MM = (4, 5, 6, 7, 8, 9, 10)
Z_FIRST_M = 20e-3


def plate_transmission(roc_m, aperture_m, frequency_hz, layer_props) -> list[float]:
    c, rho, alpha = layer_props
    z = np.linspace(Z_FIRST_M + 11e-3, roc_m + 30e-3, 401)
    water = np.abs(on_axis(roc_m, aperture_m, frequency_hz, 1.0, LayeredMedium((), Z_FIRST_M), z)).max()
    out = []
    for d_mm in THICKNESS_MM:
        medium = LayeredMedium((Layer(d_mm * 1e-3, c, rho, alpha),), Z_FIRST_M)
        zz = z[z >= medium.z_last_m]
        out.append(float(np.abs(on_axis(roc_m, aperture_m, frequency_hz, 1.0, medium, zz)).max() / water))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frequency-khz", type=float, default=250.0)
    ap.add_argument("--roc-mm", type=float, default=63.2)
    ap.add_argument("--aperture-mm", type=float, default=64.0)
    a = ap.parse_args(argv)
    f = a.frequency_khz * 1e3

    def at_hu(hu):
        m = hu_to_medium(np.array([hu], np.float32))
        return float(m.sound_speed_m_s[0]), float(m.density_kg_m3[0]), float(m.alpha_coeff_db_mhz_y_cm[0])

    c_p = bone_sound_speed_m_s("cortical", f)
    alpha_p = at_hu(hu_for_sound_speed(c_p))[2]
    models = {"ITRUSST cortical (HU 1625)": at_hu(1625.0),
              f"Pichardo 2011 cortical ({c_p:.0f} m/s, {PICHARDO_2011['cortical'][2]:g} kg/m³)":
                  (c_p, PICHARDO_2011["cortical"][2], alpha_p),
              f"HU map at the pseudo-CT's cortical HU {PseudoCTConfig(frequency_hz=f).cortical_hu:g}":
                  at_hu(PseudoCTConfig(frequency_hz=f).cortical_hu)}
    print(f"{a.frequency_khz:g} kHz, bowl R {a.roc_mm} / D {a.aperture_mm} mm; plate thickness (mm): "
          + " ".join(f"{d:5d}" for d in THICKNESS_MM) + "   mean")
    for name, props in models.items():
        t = plate_transmission(a.roc_mm * 1e-3, a.aperture_mm * 1e-3, f, props)
        print(f"{name:58s} c {props[0]:6.0f} ρ {props[1]:6.0f}: " + " ".join(f"{x:5.2f}" for x in t)
              + f"   {np.mean(t):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
