"""Low-dose CT simulation by projection-domain noise insertion, as MONAI transforms.

This follows the way the AAPM-Mayo quarter-dose data were made (Yu et al., Med. Phys. 2012; Zeng et al.,
Med. Phys. 2015): forward-project the full-dose image, add the extra quantum (Poisson) and electronic
(Gaussian) noise that a lower dose would bring, reconstruct only that noise with FBP and add it to the image.
Reconstructing the noise alone keeps the full-dose anatomy and resolution untouched.

The full-dose image already carries the noise of a scan with ``incident_flux`` photons; a scan at dose
fraction ``d`` has ``d * incident_flux``. Log-sinogram noise variances add, so the missing noise is that of a
scan at ``incident_flux * d / (1 - d)`` photons with electronic variance ``electronic_noise_var * (1 + d) / (1 - d)``
(Zeng et al., eq. 7). The simulation draws Poisson counts at that flux plus the Gaussian electronic noise,
takes the log and subtracts the clean sinogram.

Geometry is idealised (parallel beam, one detector bin per pixel, views over 180 degrees), so ``incident_flux``
is an effective number of photons per detector bin per view: with the default 720 views it was calibrated
(``scripts/benchmark_simulation.py --calibrate-to-psnr 29``) so that quarter dose on 3 mm abdominal Siemens
slices with 0.98 mm pixels degrades them as much as the real Mayo quarter dose does (PSNR about 29 dB, RMSE
about 14 HU in the [-160, 240] HU window). The noise level follows the photons per bin summed over all views,
so scale ``incident_flux`` by 720 / ``num_views`` when changing the views. With a fixed flux per bin, the
inserted noise standard deviation grows roughly as 1 / pixel spacing.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import ClassVar

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, ensure_tuple_rep, get_equivalent_dtype

from custom.simulation.projector import ParallelBeamProjector

# Effective full-dose photons per detector bin per view, calibrated on the shared Siemens abdomen slices
# with scripts/benchmark_simulation.py (see the module docstring).
DEFAULT_INCIDENT_FLUX = 5.15e6
DEFAULT_ELECTRONIC_NOISE_VAR = 10.0
DEFAULT_NUM_VIEWS = 720
# Apodised ramp for the inserted noise: between the sharp ramp and the smooth Hann, like the B30/Br38 kernels.
DEFAULT_FILTER = "shepp-logan"
# Linear attenuation of water at the effective energy of a 120 kVp spectrum (about 70 keV).
MU_WATER_PER_MM = 0.0192
# Counts are floored here before the log so that photon starvation gives a large but finite value.
MIN_COUNTS = 1.0


def line_integrals_of_hu(
    hu: torch.Tensor, projector: ParallelBeamProjector, pixel_spacing_mm: float, mu_water_per_mm: float = MU_WATER_PER_MM
) -> torch.Tensor:
    """Attenuation line integrals (B, views, bins) of HU images (B, 1, H, W).

    Values below -1000 HU (padding outside the scan circle) count as air.
    """
    attenuation_per_pixel = (mu_water_per_mm * (1.0 + hu.float() / 1000.0)).clamp_min(0.0) * pixel_spacing_mm
    return projector.forward(attenuation_per_pixel)


def reconstructed_noise_hu(
    line_integrals: torch.Tensor,
    projector: ParallelBeamProjector,
    pixel_spacing_mm: float,
    generator: torch.Generator,
    dose_fraction: float = 0.25,
    incident_flux: float = DEFAULT_INCIDENT_FLUX,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    mu_water_per_mm: float = MU_WATER_PER_MM,
) -> torch.Tensor:
    """FBP image (B, 1, H, W), in HU, of the noise that lowering the dose to ``dose_fraction`` adds to ``line_integrals``."""
    inserted_flux = incident_flux * dose_fraction / (1.0 - dose_fraction)
    inserted_electronic_std = math.sqrt(electronic_noise_var * (1.0 + dose_fraction) / (1.0 - dose_fraction))
    counts = torch.poisson(inserted_flux * torch.exp(-line_integrals), generator=generator)
    counts += inserted_electronic_std * torch.randn(counts.shape, generator=generator, device=counts.device, dtype=counts.dtype)
    noisy_line_integrals = -torch.log(counts.clamp_min(MIN_COUNTS) / inserted_flux)
    noise_attenuation_per_mm = projector.fbp(noisy_line_integrals - line_integrals) / pixel_spacing_mm
    return noise_attenuation_per_mm * (1000.0 / mu_water_per_mm)


def simulate_low_dose_hu(
    full_dose_hu: torch.Tensor,
    pixel_spacing_mm: float,
    generator: torch.Generator,
    dose_fraction: float = 0.25,
    incident_flux: float = DEFAULT_INCIDENT_FLUX,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    num_views: int = DEFAULT_NUM_VIEWS,
    filter_name: str = DEFAULT_FILTER,
    mu_water_per_mm: float = MU_WATER_PER_MM,
    views_per_chunk: int | None = None,
    realisations: int = 1,
) -> torch.Tensor:
    """Low-dose versions (B * realisations, 1, H, W) of full-dose HU images (B, 1, H, W).

    The realisations of one image are consecutive and share its forward projection, the costly part.
    """
    repeated_full_dose = full_dose_hu.repeat_interleave(realisations, dim=0)
    if dose_fraction == 1.0:
        return repeated_full_dose
    projector = ParallelBeamProjector(tuple(full_dose_hu.shape[-2:]), num_views, filter_name, views_per_chunk)
    line_integrals = line_integrals_of_hu(full_dose_hu, projector, pixel_spacing_mm, mu_water_per_mm)
    noise = reconstructed_noise_hu(
        line_integrals.repeat_interleave(realisations, dim=0), projector, pixel_spacing_mm, generator,
        dose_fraction, incident_flux, electronic_noise_var, mu_water_per_mm,
    )
    return repeated_full_dose + noise.to(full_dose_hu.dtype)


def _square_pixel_spacing(image: MetaTensor) -> float:
    """In-plane spacing (mm) from the affine; the projector needs square pixels."""
    row_spacing, column_spacing = (float(s) for s in affine_to_spacing(image.affine, r=2))
    if not math.isclose(row_spacing, column_spacing, rel_tol=0.01):
        raise ValueError(f"low-dose simulation needs square pixels, got spacing {row_spacing} x {column_spacing} mm")
    return row_spacing


def _output_dtype(image: NdarrayOrTensor) -> np.dtype | torch.dtype:
    """Integer images cannot hold the fractional noise, so they come back as float32."""
    return image.dtype if get_equivalent_dtype(image.dtype, torch.Tensor).is_floating_point else torch.float32


class SimulateLowDose(Randomizable, Transform):
    """Turn a full-dose HU image (C, H, W) or (H, W) into a simulated low-dose one of the same type and shape.

    Channels are treated as separate slices. Numpy, torch and MetaTensor inputs are accepted; a MetaTensor's
    pixel spacing comes from its affine (a MetaTensor without one has the identity affine, i.e. 1 mm), any
    other input needs ``pixel_spacing_mm``. Integer images come back as float32. Each call draws new noise;
    ``seed`` (or ``set_random_state``) makes the sequence of images reproducible.

    Args:
        dose_fraction: simulated dose relative to the input's dose, in (0, 1]; 0.25 is quarter dose.
        incident_flux: effective photons per detector bin per view of the *full-dose* scan.
        electronic_noise_var: variance of the detector's electronic noise, in photons squared, at full dose.
        num_views: views over 180 degrees (even); fewer run faster, but scale ``incident_flux`` to keep the noise level.
        filter_name: FBP window for the inserted noise: ramp, shepp-logan, cosine, hamming or hann.
        pixel_spacing_mm: pixel spacing for inputs without an affine.
        mu_water_per_mm: linear attenuation of water that maps HU to attenuation.
        views_per_chunk: view pairs projected at once (None: chosen per device); lower it if GPU memory runs short.
        seed: random seed.
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        dose_fraction: float = 0.25,
        incident_flux: float = DEFAULT_INCIDENT_FLUX,
        electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
        num_views: int = DEFAULT_NUM_VIEWS,
        filter_name: str = DEFAULT_FILTER,
        pixel_spacing_mm: float | None = None,
        mu_water_per_mm: float = MU_WATER_PER_MM,
        views_per_chunk: int | None = None,
        seed: int | None = None,
    ) -> None:
        if not 0.0 < dose_fraction <= 1.0:
            raise ValueError(f"dose_fraction must be in (0, 1], got {dose_fraction}")
        if incident_flux <= 0 or electronic_noise_var < 0 or mu_water_per_mm <= 0:
            raise ValueError("incident_flux and mu_water_per_mm must be positive and electronic_noise_var non-negative")
        if pixel_spacing_mm is not None and pixel_spacing_mm <= 0:
            raise ValueError(f"pixel_spacing_mm must be positive, got {pixel_spacing_mm}")
        # building a projector validates num_views and filter_name up front rather than at the first image
        ParallelBeamProjector((2, 2), num_views, filter_name, views_per_chunk)
        self.simulation_settings = {
            "dose_fraction": dose_fraction,
            "incident_flux": incident_flux,
            "electronic_noise_var": electronic_noise_var,
            "num_views": num_views,
            "filter_name": filter_name,
            "mu_water_per_mm": mu_water_per_mm,
            "views_per_chunk": views_per_chunk,
        }
        self.pixel_spacing_mm = pixel_spacing_mm
        self._noise_seed = 0
        self.set_random_state(seed=seed)

    def randomize(self, data: object = None) -> None:
        self._noise_seed = int(self.R.randint(2**31 - 1))

    def _pixel_spacing(self, image: NdarrayOrTensor) -> float:
        if isinstance(image, MetaTensor):
            return _square_pixel_spacing(image)
        if self.pixel_spacing_mm is None:
            raise ValueError("an image without an affine (numpy or plain torch) needs pixel_spacing_mm")
        return self.pixel_spacing_mm

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if img.ndim not in (2, 3):
            raise ValueError(f"expected a 2D image shaped (C, H, W) or (H, W), got shape {tuple(img.shape)}")
        if randomize:
            self.randomize()
        spacing = self._pixel_spacing(img)
        hu = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        slices = hu.reshape(-1, 1, *hu.shape[-2:])
        generator = torch.Generator(device=slices.device).manual_seed(self._noise_seed)
        low_dose = simulate_low_dose_hu(slices, spacing, generator, **self.simulation_settings).reshape(hu.shape)
        return convert_to_dst_type(low_dose, img, dtype=_output_dtype(img))[0]


class SimulateLowDosed(Randomizable, MapTransform):
    """Dictionary version of :class:`SimulateLowDose`: adds ``output_key`` (e.g. "low_dose") made from ``keys``.

    The full-dose item is left unchanged; the new item is a copy of its meta data with simulated noise.
    Several keys each get their own output key and independent noise. Keyword arguments are those of
    :class:`SimulateLowDose`.
    """

    backend = SimulateLowDose.backend

    def __init__(
        self,
        keys: KeysCollection = "full_dose",
        output_key: KeysCollection = "low_dose",
        allow_missing_keys: bool = False,
        seed: int | None = None,
        **simulation_kwargs: object,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.output_keys = ensure_tuple_rep(output_key, len(self.keys))
        self.simulator = SimulateLowDose(**simulation_kwargs)
        self.set_random_state(seed=seed)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> SimulateLowDosed:
        super().set_random_state(seed, state)
        self.simulator.set_random_state(seed, state)
        return self

    def randomize(self, data: object = None) -> None:
        self.simulator.randomize(data)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, output_key in self.key_iterator(d, self.output_keys):
            d[output_key] = self.simulator(d[key])
        return d
