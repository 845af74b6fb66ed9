"""Low-dose CT simulation by projection-domain noise insertion, as MONAI transforms, calibrated to real
Siemens (Mayo) quarter-dose noise in level *and* texture.

This follows the way the AAPM-Mayo quarter-dose data were made (Yu et al., Med. Phys. 2012; Zeng et al.,
Med. Phys. 2015): forward-project the full-dose image, add the extra quantum (Poisson) and electronic
(Gaussian) noise that a lower dose would bring, reconstruct only that noise with FBP and add it to the image.
Reconstructing the noise alone keeps the full-dose anatomy and resolution untouched.

The full-dose image already carries the noise of a scan with ``incident_flux`` photons; a scan at dose
fraction ``d`` has ``d * incident_flux``. Log-sinogram noise variances add, so the missing noise is that of a
scan at ``incident_flux * d / (1 - d)`` photons with electronic variance ``electronic_noise_var * (1 + d) / (1 - d)``
(Zeng et al., eq. 7).

Why the first version gave the wrong noise on real data (15 HU instead of ~28-36 HU, NPS peak at 0.21-0.26
instead of ~0.16 cycles/pixel, 35-45 % of the peak at Nyquist instead of ~3 %): its flux was per detector bin of
one *pixel*, so the noise followed the input's pixel size, and its Shepp-Logan window is far sharper than the
B30f kernel of the Mayo scans. Here:

* geometry is the Siemens SOMATOM Definition AS+ rebinned to parallel rays (source-isocentre 595 mm,
  source-detector 1085.6 mm, 736 channels of 1.2858 mm, i.e. 0.705 mm at the isocentre, 1152 views per
  rotation); the projector works in mm, so the noise does not depend on the input's pixel spacing;
* ``incident_flux`` is physical: photons per detector channel per view (1152 views/rotation) in the bowtie
  centre, for the reconstructed slice. Simulating fewer views or wider bins pools the photons of the real
  rays they stand for (x 1152 / num_views x bin / 0.705 mm; direct and conjugate rays both count), so the
  noise level does not depend on ``num_views`` either;
* a bowtie lowers the flux away from the centre (Gaussian profile with a floor, typical of body bowties; no
  vendor data), which raises the noise in the periphery as on the scanner;
* the inserted noise is reconstructed with a B30f-like window defined in cycles/mm (see
  ``custom.simulation.projector``), fitted to the NPS of real L109 quarter-dose images;
* the line integrals only set the noise variance, which varies slowly, so they are computed on a ~2 mm
  image at a third of the views and interpolated: that and 288 noise views keep a 512x512 slice under 2 s
  on two CPU cores. 288 views over 180 degrees leave spokes in the noise spectrum 0.5 pi / 288 = 0.005
  cycles/pixel apart at Nyquist, far below what any 64-pixel window resolves.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, ensure_tuple_rep, get_equivalent_dtype

from custom.simulation.projector import ParallelBeamProjector

# Siemens SOMATOM Definition AS+ (the Mayo scanner), as in the DICOM headers and the TCIA projection data.
SOURCE_ISOCENTRE_MM = 595.0
SOURCE_DETECTOR_MM = 1085.6
DETECTOR_PITCH_MM = 1.2858
DETECTOR_BIN_MM = DETECTOR_PITCH_MM * SOURCE_ISOCENTRE_MM / SOURCE_DETECTOR_MM  # 0.705 mm at the isocentre
SCANNER_VIEWS_PER_ROTATION = 1152
# Bowtie: relative flux exp(-(t / width)^2), not below the floor (typical body-bowtie shape; no vendor data).
BOWTIE_WIDTH_MM = 170.0
BOWTIE_FLOOR = 0.05

# Full-dose photons per detector channel per view at the bowtie centre, calibrated (scripts/calibrate_simulation.py) so that
# quarter dose of real Mayo L067 full-dose 3 mm B30f images has the noise level of real Mayo L109 quarter dose.
DEFAULT_INCIDENT_FLUX = 2.2e5
DEFAULT_ELECTRONIC_NOISE_VAR = 10.0  # photons^2 per channel per view
DEFAULT_NUM_VIEWS = 288  # simulated parallel views over 180 degrees; the photons of all 1152 real views are kept
DEFAULT_FILTER = "b30f"
# Linear attenuation of water at the effective energy of a 100-120 kVp spectrum (about 70 keV).
MU_WATER_PER_MM = 0.0192
# Counts are floored here before the log so that photon starvation gives a large but finite value.
MIN_COUNTS = 1.0
# Line integrals (for the noise variance only) come from an image of about this pixel size ...
COARSE_PIXEL_MM = 2.0
# ... at this fraction of the noise views.
COARSE_VIEW_FACTOR = 3


def bowtie_transmission(t_mm: torch.Tensor) -> torch.Tensor:
    """Relative incident flux of the ray at signed distance ``t_mm`` from the isocentre (1 in the centre)."""
    return torch.exp(-((t_mm / BOWTIE_WIDTH_MM) ** 2)) * (1.0 - BOWTIE_FLOOR) + BOWTIE_FLOOR


def photons_per_simulated_ray(num_views: int, bin_width_mm: float = DETECTOR_BIN_MM) -> float:
    """How many real (channel, view) readings one simulated parallel ray stands for.

    Over 180 degrees the scanner's 1152 views give 576 parallel directions, each measured twice (direct and
    conjugate ray); a simulated view covers 576 / num_views of them and a bin ``bin_width_mm / 0.705`` channels.
    """
    return SCANNER_VIEWS_PER_ROTATION / num_views * bin_width_mm / DETECTOR_BIN_MM


def scanner_projector(
    image_shape: tuple[int, int],
    pixel_spacing_mm: float,
    num_views: int = DEFAULT_NUM_VIEWS,
    filter_name: str = DEFAULT_FILTER,
    views_per_chunk: int | None = None,
) -> ParallelBeamProjector:
    """Projector with the scanner's rebinned ray spacing, for images of ``pixel_spacing_mm``."""
    return ParallelBeamProjector(image_shape, num_views, filter_name, views_per_chunk, pixel_spacing_mm, DETECTOR_BIN_MM)


def line_integrals_of_hu(
    hu: torch.Tensor, projector: ParallelBeamProjector, pixel_spacing_mm: float, mu_water_per_mm: float = MU_WATER_PER_MM
) -> torch.Tensor:
    """Attenuation line integrals (B, views, bins) of HU images (B, 1, H, W) on ``projector``'s rays.

    Values below -1000 HU (padding outside the scan circle) count as air. They only set the noise variance,
    so they are computed on a ~2 mm image at a third of the views and interpolated (bilinear in angle and
    ray position; errors of a few percent in the variance at sharp bone edges only).
    """
    attenuation = (mu_water_per_mm * (1.0 + hu.float() / 1000.0)).clamp_min(0.0)  # per mm
    factor = max(1, round(COARSE_PIXEL_MM / pixel_spacing_mm))
    height, width = hu.shape[-2:]
    if factor > 1:  # zero-pad to a multiple of the factor (air), then average
        attenuation = F.pad(attenuation, (0, (-width) % factor, 0, (-height) % factor))
        attenuation = F.avg_pool2d(attenuation, factor)
    coarse_spacing = pixel_spacing_mm * factor
    coarse_views = max(2, 2 * round(projector.num_views / COARSE_VIEW_FACTOR / 2))
    coarse = ParallelBeamProjector(
        (attenuation.shape[-2], attenuation.shape[-1]),
        coarse_views,
        "ramp",
        projector.views_per_chunk,
        coarse_spacing,
        coarse_spacing,
    )
    # padding shifted the coarse image centre by (pad / 2) fine pixels; negligible for a variance map
    coarse_integrals = coarse.forward(attenuation, ray_step=1.0)  # (B, Vc, Dc)
    # close the angular period: view pi equals view 0 mirrored in t
    periodic = torch.cat([coarse_integrals, coarse_integrals[:, :1].flip(-1)], dim=1).unsqueeze(1)
    t = projector.detector_positions_mm(hu.device) / (0.5 * (coarse.num_detectors - 1) * coarse.bin_width_mm)
    theta = torch.arange(projector.num_views, device=hu.device, dtype=torch.float32) / projector.num_views * 2.0 - 1.0
    grid = torch.stack(torch.meshgrid(theta, t, indexing="ij")[::-1], dim=-1)[None].expand(hu.shape[0], -1, -1, -1)
    return F.grid_sample(periodic, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]


def reconstructed_noise_hu(
    line_integrals: torch.Tensor,
    projector: ParallelBeamProjector,
    generator: torch.Generator,
    dose_fraction: float = 0.25,
    incident_flux: float = DEFAULT_INCIDENT_FLUX,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    mu_water_per_mm: float = MU_WATER_PER_MM,
) -> torch.Tensor:
    """FBP image (B, 1, H, W), in HU, of the noise that lowering the dose to ``dose_fraction`` adds.

    ``incident_flux`` and ``electronic_noise_var`` are per real channel per view; they are pooled over the real
    readings each simulated ray stands for. The projector works in mm, so no pixel spacing is needed.
    """
    pooled = photons_per_simulated_ray(projector.num_views, projector.bin_width_mm)
    bowtie = bowtie_transmission(projector.detector_positions_mm(line_integrals.device))
    inserted_flux = pooled * incident_flux * bowtie * (dose_fraction / (1.0 - dose_fraction))  # (D,)
    inserted_electronic_std = math.sqrt(pooled * electronic_noise_var * (1.0 + dose_fraction) / (1.0 - dose_fraction))
    counts = torch.poisson(inserted_flux * torch.exp(-line_integrals), generator=generator)
    counts += inserted_electronic_std * torch.randn(counts.shape, generator=generator, device=counts.device, dtype=counts.dtype)
    noisy_line_integrals = -torch.log(counts.clamp_min(MIN_COUNTS) / inserted_flux)
    noise_attenuation_per_mm = projector.fbp(noisy_line_integrals - line_integrals)
    return noise_attenuation_per_mm * (1000.0 / mu_water_per_mm)


def validate_settings(
    dose_fraction: float, incident_flux: float, electronic_noise_var: float, mu_water_per_mm: float = MU_WATER_PER_MM
) -> None:
    """Raise ValueError naming the first bad parameter."""
    if not 0.0 < dose_fraction <= 1.0:
        raise ValueError(f"dose_fraction must be in (0, 1], got {dose_fraction}")
    if not incident_flux > 0:
        raise ValueError(f"incident_flux must be positive, got {incident_flux}")
    if not electronic_noise_var >= 0:
        raise ValueError(f"electronic_noise_var must be non-negative, got {electronic_noise_var}")
    if not mu_water_per_mm > 0:
        raise ValueError(f"mu_water_per_mm must be positive, got {mu_water_per_mm}")


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
    """Low-dose versions (B * realisations, 1, H, W) of full-dose HU images (B, 1, H, W) with square pixels
    of ``pixel_spacing_mm``.

    The realisations of one image are consecutive and share its forward projection.
    """
    validate_settings(dose_fraction, incident_flux, electronic_noise_var, mu_water_per_mm)
    if not pixel_spacing_mm > 0:
        raise ValueError(f"pixel_spacing_mm must be positive, got {pixel_spacing_mm}")
    repeated_full_dose = full_dose_hu.repeat_interleave(realisations, dim=0)
    if dose_fraction == 1.0:
        return repeated_full_dose
    projector = scanner_projector(
        (full_dose_hu.shape[-2], full_dose_hu.shape[-1]), pixel_spacing_mm, num_views, filter_name, views_per_chunk
    )
    line_integrals = line_integrals_of_hu(full_dose_hu, projector, pixel_spacing_mm, mu_water_per_mm)
    noise = reconstructed_noise_hu(
        line_integrals.repeat_interleave(realisations, dim=0),
        projector,
        generator,
        dose_fraction,
        incident_flux,
        electronic_noise_var,
        mu_water_per_mm,
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
        incident_flux: full-dose photons per detector channel per view (Siemens AS+ geometry, 1152 views per
            rotation) in the bowtie centre; the default matches real Mayo quarter dose.
        electronic_noise_var: variance of the detector's electronic noise, photons squared per channel per view.
        num_views: simulated views over 180 degrees (even); the noise level does not depend on it (photons are
            pooled), fewer only run faster and coarsen the angular sampling of the noise.
        filter_name: FBP window for the inserted noise: b30f (default, in cycles/mm, like the Mayo kernel),
            or ramp, shepp-logan, cosine, hamming, hann (per detector bin of 0.705 mm).
        pixel_spacing_mm: pixel spacing for inputs without an affine.
        mu_water_per_mm: linear attenuation of water that maps HU to attenuation.
        views_per_chunk: view pairs projected at once (None: chosen per device); lower it if GPU memory runs short.
        seed: random seed.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]  # noqa: RUF012 (MONAI declares it per instance)

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
        validate_settings(dose_fraction, incident_flux, electronic_noise_var, mu_water_per_mm)
        if pixel_spacing_mm is not None and pixel_spacing_mm <= 0:
            raise ValueError(f"pixel_spacing_mm must be positive, got {pixel_spacing_mm}")
        # building a projector validates num_views and filter_name up front rather than at the first image
        scanner_projector((2, 2), 1.0, num_views, filter_name, views_per_chunk)
        self.simulation_settings: dict[str, Any] = {
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

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True, dose_fraction: float | None = None) -> NdarrayOrTensor:
        """Simulate ``img`` at the simulator's dose, or at ``dose_fraction`` for this call (the other settings kept)."""
        if img.ndim not in (2, 3):
            raise ValueError(f"expected a 2D image shaped (C, H, W) or (H, W), got shape {tuple(img.shape)}")
        settings = dict(self.simulation_settings)
        if dose_fraction is not None:
            settings["dose_fraction"] = dose_fraction  # simulate_low_dose_hu validates it
        if randomize:
            self.randomize()
        spacing = self._pixel_spacing(img)
        hu = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        slices = hu.reshape(-1, 1, *hu.shape[-2:])
        generator = torch.Generator(device=slices.device).manual_seed(self._noise_seed)
        low_dose = simulate_low_dose_hu(slices, spacing, generator, **settings).reshape(hu.shape)
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
        **simulation_kwargs: Any,
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
