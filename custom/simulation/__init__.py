"""Low-dose physics: the torch CT projector, projection-domain noise insertion (MONAI transforms), noise measures."""

from custom.simulation.low_dose import SimulateLowDose, SimulateLowDosed, simulate_low_dose_hu

__all__ = ["SimulateLowDose", "SimulateLowDosed", "simulate_low_dose_hu"]
