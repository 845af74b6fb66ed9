"""Command-line options of the low-dose simulation, shared by every script that simulates (one set of flags,
one set of defaults: those of :class:`custom.simulation.low_dose.SimulateLowDose`)."""

from __future__ import annotations

import argparse
from typing import Any

from custom.simulation.low_dose import (
    DEFAULT_ELECTRONIC_NOISE_VAR,
    DEFAULT_FILTER,
    DEFAULT_INCIDENT_FLUX,
    DEFAULT_NUM_VIEWS,
    SimulateLowDose,
)
from custom.simulation.projector import FILTER_NAMES


def add_simulation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulation flags (dose, flux, electronic noise, views, kernel) as one argument group."""
    group = parser.add_argument_group("low-dose simulation (defaults: calibrated to real Mayo quarter dose)")
    group.add_argument("--dose-fraction", type=float, default=0.25, help="simulated dose relative to the input (default 0.25)")
    group.add_argument(
        "--incident-flux",
        type=float,
        default=DEFAULT_INCIDENT_FLUX,
        help=f"full-dose photons per detector channel per view at the bowtie centre (default {DEFAULT_INCIDENT_FLUX:g})",
    )
    group.add_argument(
        "--electronic-noise-var",
        type=float,
        default=DEFAULT_ELECTRONIC_NOISE_VAR,
        help=f"electronic noise variance, photons^2 per channel per view (default {DEFAULT_ELECTRONIC_NOISE_VAR:g})",
    )
    group.add_argument(
        "--num-views",
        type=int,
        default=DEFAULT_NUM_VIEWS,
        help=f"simulated views; does not change the noise level (default {DEFAULT_NUM_VIEWS})",
    )
    group.add_argument(
        "--filter-name", choices=FILTER_NAMES, default=DEFAULT_FILTER, help=f"reconstruction kernel (default {DEFAULT_FILTER})"
    )


def simulation_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The simulation flags of ``args`` as keyword arguments of :class:`SimulateLowDose`."""
    return {
        "dose_fraction": args.dose_fraction,
        "incident_flux": args.incident_flux,
        "electronic_noise_var": args.electronic_noise_var,
        "num_views": args.num_views,
        "filter_name": args.filter_name,
    }


def simulator_from_args(args: argparse.Namespace, seed: int | None = None, **extra: Any) -> SimulateLowDose:
    """A :class:`SimulateLowDose` with the flags' settings; raises ValueError naming a bad parameter."""
    return SimulateLowDose(**simulation_settings(args), seed=seed, **extra)
