"""tfus: transcranial focused ultrasound simulation flows, a Zarr dataset and DeepTFUS predictions.

One import namespace: ``tfus.sim`` (physics), ``tfus.storage`` (the dataset), ``tfus.models`` (DeepTFUS),
``tfus.flows`` (Prefect flows and the CLI). Their folders sit at the repository root (``sim/``,
``storage/``, ``models/``, ``flows/``); the build configuration (pyproject.toml, ``package-dir``) maps them
into this package, so nothing generic such as ``storage`` is installed at the top level of site-packages.
"""

from __future__ import annotations

__version__ = "0.2.0"
__all__ = ["__version__", "main"]


def main(argv: list[str] | None = None) -> int:
    """The ``tfus`` command line (``tfus.flows.cli.main``); imported lazily so ``import tfus`` stays cheap."""
    from tfus.flows.cli import main as cli_main  # noqa: PLC0415

    return cli_main(argv)
