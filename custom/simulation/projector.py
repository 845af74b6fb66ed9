"""Parallel-beam CT forward projection and filtered back-projection in plain torch, in physical units (mm).

Low-dose simulation needs a projector that runs wherever training runs (CPU or GPU) and carries no GPL
dependency (ASTRA is GPL), so it is written with ``grid_sample``.

Geometry: ``num_views`` views equally spaced over [0, pi); ``num_detectors`` bins ``bin_width_mm`` apart,
centred on the image centre. Lengths are in mm (``pixel_spacing_mm`` per pixel), so a sinogram value is the
line integral of the pixel values in value x mm, and FBP returns values per pixel again. With the defaults
(1 mm pixels, bins one pixel wide) everything is in pixel units, as in the first version of this module.

Why a *rebinned parallel* beam stands in for the Siemens fan beam: the scanner itself rebins its fan data
to parallel rays before filtering (Siemens' standard reconstruction), the rebinned rays keep the channel
pitch at the isocentre (1.2858 mm x 595 / 1085.6 = 0.705 mm), and a fan-beam view of noise reconstructs
to the same texture once rebinned. What noise simulation needs from the geometry is the ray spacing in mm,
the angular sampling and the photons per ray, all of which carry over (see ``custom.simulation.low_dose``).

The FBP filter is the band-limited ramp times an apodisation window. The classic windows are defined per
detector bin (cutoff at the bin Nyquist); ``"b30f"`` is defined in cycles/mm so that the texture is the
same for any bin width and pixel spacing, as a scanner's kernel is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Smooth soft-tissue kernel like Siemens B30f, as a generalised Gaussian window W(f) = 2^-(f / f50)^order in
# cycles/mm, fitted (scripts/calibrate_simulation.py) to the NPS of real Mayo L109 quarter-dose B30f images.
B30F_HALF_MTF_CYCLES_PER_MM = 0.38
B30F_ORDER = 2.0
FILTER_NAMES = ("ramp", "shepp-logan", "cosine", "hamming", "hann", "b30f")
CPU_VIEWS_PER_CHUNK = 8
ACCELERATOR_VIEWS_PER_CHUNK = 32


def apodisation_window(frequency_per_bin: torch.Tensor, filter_name: str, bin_width_mm: float = 1.0) -> torch.Tensor:
    """Window at ``frequency_per_bin`` (cycles per bin, |f| <= 0.5) for one of ``FILTER_NAMES``."""
    f = frequency_per_bin
    if filter_name == "b30f":
        f_mm = f.abs() / bin_width_mm
        return torch.exp(-math.log(2.0) * (f_mm / B30F_HALF_MTF_CYCLES_PER_MM) ** B30F_ORDER)
    windows = {
        "ramp": lambda: torch.ones_like(f),
        "shepp-logan": lambda: torch.sinc(f),
        "cosine": lambda: torch.cos(math.pi * f),
        "hamming": lambda: 0.54 + 0.46 * torch.cos(2 * math.pi * f),
        "hann": lambda: 0.5 + 0.5 * torch.cos(2 * math.pi * f),
    }
    return windows[filter_name]()


def fbp_filter_response(
    num_samples: int, filter_name: str = "ramp", device: torch.device | str | None = None, bin_width_mm: float = 1.0
) -> torch.Tensor:
    """Frequency response (length ``num_samples``, FFT order) of the FBP ramp filter times an apodisation window,
    for bins ``bin_width_mm`` apart (the ramp scales as 1 / bin width).

    The ramp is the FFT of the band-limited spatial kernel (Kak & Slaney, eq. 3.61) rather than a sampled
    ``|f|``, whose zero DC term would shift the reconstructed mean.
    """
    if filter_name not in FILTER_NAMES:
        raise ValueError(f"unknown FBP filter {filter_name!r}; choose one of {FILTER_NAMES}")
    odd_offsets = torch.cat([torch.arange(1, num_samples // 2 + 1, 2), torch.arange(num_samples // 2 - 1, 0, -2)])
    kernel = torch.zeros(num_samples, dtype=torch.float64)
    kernel[0] = 0.25
    kernel[1::2] = -1.0 / (math.pi * odd_offsets.double()) ** 2
    response = torch.fft.fft(kernel).real / bin_width_mm
    frequency = torch.fft.fftfreq(num_samples, dtype=torch.float64)
    window = apodisation_window(frequency, filter_name, bin_width_mm)
    return (response * window).to(device=device, dtype=torch.float32)


class ParallelBeamProjector:
    """Forward projector and FBP for images of one fixed size (H, W); image batches are shaped (B, 1, H, W).

    Args:
        image_shape: (H, W) of the images.
        num_views: number of view angles over [0, pi); must be even.
        filter_name: FBP apodisation window, one of ``FILTER_NAMES``.
        views_per_chunk: views sampled at once (None: chosen per device).
        pixel_spacing_mm: pixel size (square pixels).
        bin_width_mm: detector bin spacing at the isocentre; None: one pixel.
        num_detectors: bins; None: enough to cover the image diagonal.
    """

    def __init__(
        self,
        image_shape: tuple[int, int],
        num_views: int = 720,
        filter_name: str = "ramp",
        views_per_chunk: int | None = None,
        pixel_spacing_mm: float = 1.0,
        bin_width_mm: float | None = None,
        num_detectors: int | None = None,
    ) -> None:
        if len(image_shape) != 2 or min(image_shape) < 2:
            raise ValueError(f"image_shape must be (H, W) with H, W >= 2, got {image_shape}")
        if num_views < 2 or num_views % 2 or (views_per_chunk is not None and views_per_chunk < 1):
            raise ValueError(f"num_views must be even and >= 2 and views_per_chunk >= 1, got {num_views}, {views_per_chunk}")
        if filter_name not in FILTER_NAMES:
            raise ValueError(f"unknown FBP filter {filter_name!r}; choose one of {FILTER_NAMES}")
        if pixel_spacing_mm <= 0 or (bin_width_mm is not None and bin_width_mm <= 0):
            raise ValueError(f"pixel_spacing_mm and bin_width_mm must be positive, got {pixel_spacing_mm}, {bin_width_mm}")
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.num_views = int(num_views)
        self.filter_name = filter_name
        self.views_per_chunk = views_per_chunk
        self.pixel_spacing_mm = float(pixel_spacing_mm)
        self.bin_width_mm = float(bin_width_mm) if bin_width_mm is not None else self.pixel_spacing_mm
        half_diagonal_mm = 0.5 * math.hypot(*self.image_shape) * self.pixel_spacing_mm
        self.num_detectors = int(num_detectors) if num_detectors else 2 * math.ceil(half_diagonal_mm / self.bin_width_mm) + 1
        self.angles = torch.arange(self.num_views, dtype=torch.float64) * (math.pi / self.num_views)

    def detector_positions_mm(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Signed distance of every bin's ray from the isocentre (mm)."""
        return (
            torch.arange(self.num_detectors, dtype=torch.float32, device=device) - (self.num_detectors - 1) / 2
        ) * self.bin_width_mm

    def _angle_chunks(self, device: torch.device, count: int | None = None) -> list[torch.Tensor]:
        chunk = self.views_per_chunk or (CPU_VIEWS_PER_CHUNK if device.type == "cpu" else ACCELERATOR_VIEWS_PER_CHUNK)
        return list(self.angles[:count].to(device=device, dtype=torch.float32).split(chunk))

    def _half_extent_mm(self) -> tuple[float, float]:
        """Half width and half height of the image (mm): grid_sample's -1..1 span, align_corners=False."""
        return 0.5 * self.image_shape[1] * self.pixel_spacing_mm, 0.5 * self.image_shape[0] * self.pixel_spacing_mm

    def forward(self, images: torch.Tensor, ray_step: float = 0.5) -> torch.Tensor:
        """Line integrals (B, num_views, num_detectors) of images (B, 1, H, W), in pixel-value x mm.

        Each ray is sampled every ``ray_step`` pixels with bilinear interpolation (x = t cos - s sin, y = t sin + s cos).
        """
        if images.ndim != 4 or images.shape[1] != 1 or tuple(images.shape[2:]) != self.image_shape:
            raise ValueError(
                f"expected images shaped (B, 1, {self.image_shape[0]}, {self.image_shape[1]}), got {tuple(images.shape)}"
            )
        batch, device, dtype = images.shape[0], images.device, images.dtype
        half_x, half_y = self._half_extent_mm()
        step = ray_step * self.pixel_spacing_mm
        half_length = math.hypot(half_x, half_y)
        s = torch.arange(-half_length, half_length + step, step, device=device, dtype=dtype)
        t = self.detector_positions_mm(device).to(dtype)
        tt, ss = torch.meshgrid(t, s, indexing="ij")  # (D, S)
        views = []
        for angles in self._angle_chunks(device):
            cos, sin = torch.cos(angles).to(dtype)[:, None, None], torch.sin(angles).to(dtype)[:, None, None]
            x = (tt * cos - ss * sin) / half_x
            y = (tt * sin + ss * cos) / half_y
            grid = torch.stack([x, y], dim=-1).reshape(1, -1, len(s), 2)  # (1, K * D, S, 2)
            sampled = F.grid_sample(
                images.reshape(1, batch, *self.image_shape), grid, mode="bilinear", padding_mode="zeros", align_corners=False
            ).reshape(batch, len(angles), self.num_detectors, len(s))
            views.append(sampled.sum(-1) * step)
        return torch.cat(views, dim=1)

    def filter_sinogram(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Apply the FBP filter along the detector axis, zero-padded against circular-convolution wrap-around."""
        padded_length = max(64, 2 ** math.ceil(math.log2(2 * self.num_detectors)))
        response = fbp_filter_response(padded_length, self.filter_name, sinogram.device, self.bin_width_mm).to(sinogram.dtype)
        spectrum = torch.fft.rfft(sinogram, n=padded_length, dim=-1) * response[: padded_length // 2 + 1]
        return torch.fft.irfft(spectrum, n=padded_length, dim=-1)[..., : self.num_detectors]

    def backproject(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Back-projection (B, 1, H, W) of sinograms (B, num_views, num_detectors), scaled by pi / num_views.

        Views theta and theta + pi/2 share one sampling grid: the second's back-projection is the first's
        on the canvas turned by a quarter (an exact flip), so it rides along as a second channel.
        """
        if sinogram.ndim != 3 or tuple(sinogram.shape[1:]) != (self.num_views, self.num_detectors):
            raise ValueError(
                f"expected sinograms shaped (B, {self.num_views}, {self.num_detectors}), got {tuple(sinogram.shape)}"
            )
        batch, device, dtype = sinogram.shape[0], sinogram.device, sinogram.dtype
        size = max(self.image_shape)
        half = self.num_views // 2
        pair = torch.cat([sinogram[:, :half], sinogram[:, half:]], dim=0)  # (2B, V/2, D)
        coordinate = (torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2) * self.pixel_spacing_mm
        # bin i sits at normalised (2 i + 1) / D - 1 with align_corners=False, i.e. at t / (D * bin / 2)
        scale = 2.0 / (self.num_detectors * self.bin_width_mm)
        canvas = torch.zeros(2 * batch, size, size, device=device, dtype=dtype)
        first_view = 0
        for angles in self._angle_chunks(device, half):
            count = len(angles)
            cos, sin = torch.cos(angles).to(dtype) * scale, torch.sin(angles).to(dtype) * scale
            t = coordinate[None, None, :] * cos[:, None, None] + coordinate[None, :, None] * sin[:, None, None]  # (K, H, W)
            grid = torch.stack([t, torch.zeros_like(t)], dim=-1)
            views = pair[:, first_view : first_view + count].transpose(0, 1).unsqueeze(2)  # (K, 2B, 1, D)
            canvas += F.grid_sample(views, grid, mode="bilinear", padding_mode="zeros", align_corners=False).sum(dim=0)
            first_view += count
        # g(x, y) = f(-y, x): undo the quarter turn of the second half
        canvas = canvas[:batch] + canvas[batch:].flip(-2).transpose(-2, -1)
        height, width = self.image_shape
        top, left = (size - height) // 2, (size - width) // 2
        image = canvas[:, top : top + height, left : left + width]
        return image.unsqueeze(1) * (math.pi / self.num_views)

    def fbp(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Filtered back-projection: images (B, 1, H, W) from sinograms (B, num_views, num_detectors)."""
        return self.backproject(self.filter_sinogram(sinogram))
