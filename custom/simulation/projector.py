"""Parallel-beam CT forward projection and filtered back-projection in plain torch.

Low-dose simulation needs a projector that runs wherever training runs (CPU or GPU) and carries no GPL
dependency (ASTRA is GPL), so it is written with ``grid_sample``:

* forward projection rotates the image for a chunk of view angles at once and sums along the rays;
* filtered back-projection filters each view in the Fourier domain and smears it back by sampling the
  filtered view at ``t = x cos(theta) + y sin(theta)`` for every pixel.

Geometry: ``num_views`` views equally spaced over [0, pi); one detector bin per pixel width, enough bins to
cover the diagonal of the (square-padded) image; lengths are in pixels, so a sinogram value is the sum of
pixel values along a ray. Every sampling grid serves two views: the view at ``theta + pi/2`` of an image
equals the view at ``theta`` of the image turned by a quarter, an exact array flip, which halves the work.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FILTER_NAMES = ("ramp", "shepp-logan", "cosine", "hamming", "hann")
CPU_VIEWS_PER_CHUNK = 4
ACCELERATOR_VIEWS_PER_CHUNK = 32


def fbp_filter_response(num_samples: int, filter_name: str = "ramp", device: torch.device | str | None = None) -> torch.Tensor:
    """Frequency response (length ``num_samples``, FFT order) of the FBP ramp filter times an apodisation window.

    The ramp is the FFT of the band-limited spatial kernel (Kak & Slaney, eq. 3.61) rather than a sampled
    ``|f|``, whose zero DC term would shift the reconstructed mean.
    """
    if filter_name not in FILTER_NAMES:
        raise ValueError(f"unknown FBP filter {filter_name!r}; choose one of {FILTER_NAMES}")
    odd_offsets = torch.cat([torch.arange(1, num_samples // 2 + 1, 2), torch.arange(num_samples // 2 - 1, 0, -2)])
    kernel = torch.zeros(num_samples, dtype=torch.float64)
    kernel[0] = 0.25
    kernel[1::2] = -1.0 / (math.pi * odd_offsets.double()) ** 2
    response = torch.fft.fft(kernel).real
    frequency = torch.fft.fftfreq(num_samples, dtype=torch.float64)  # cycles per detector bin, |f| <= 0.5
    windows = {
        "ramp": torch.ones_like(frequency),
        "shepp-logan": torch.sinc(frequency),
        "cosine": torch.cos(math.pi * frequency),
        "hamming": 0.54 + 0.46 * torch.cos(2 * math.pi * frequency),
        "hann": 0.5 + 0.5 * torch.cos(2 * math.pi * frequency),
    }
    return (response * windows[filter_name]).to(device=device, dtype=torch.float32)


def _quarter_turn(images: torch.Tensor) -> torch.Tensor:
    """g(x, y) = f(-y, x) on a square grid: its view at theta is the original's view at theta + pi/2."""
    return images.flip(-1).transpose(-2, -1)


def _undo_quarter_turn(images: torch.Tensor) -> torch.Tensor:
    return images.flip(-2).transpose(-2, -1)


class ParallelBeamProjector:
    """Forward projector and FBP for images of one fixed size (H, W); image batches are shaped (B, 1, H, W).

    Args:
        image_shape: (H, W) of the images; non-square images are zero-padded to a square internally.
        num_views: number of view angles over [0, pi); must be even (views pair up pi/2 apart).
        filter_name: FBP apodisation window, one of ``FILTER_NAMES``.
        views_per_chunk: view pairs sampled at once; memory grows as ``views_per_chunk * B * D**2 * 8`` bytes
            (D = detector bins, about 1.42 * max(H, W)). None picks per device: small chunks keep a CPU's
            intermediates in cache (4 runs 512x512 about 3x faster than 16), a GPU wants large ones to stay busy.
    """

    def __init__(
        self,
        image_shape: tuple[int, int],
        num_views: int = 720,
        filter_name: str = "ramp",
        views_per_chunk: int | None = None,
    ) -> None:
        if len(image_shape) != 2 or min(image_shape) < 2:
            raise ValueError(f"image_shape must be (H, W) with H, W >= 2, got {image_shape}")
        if num_views < 2 or num_views % 2 or (views_per_chunk is not None and views_per_chunk < 1):
            raise ValueError(f"num_views must be even and >= 2 and views_per_chunk >= 1, got {num_views}, {views_per_chunk}")
        if filter_name not in FILTER_NAMES:
            raise ValueError(f"unknown FBP filter {filter_name!r}; choose one of {FILTER_NAMES}")
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.num_views = int(num_views)
        self.filter_name = filter_name
        self.views_per_chunk = views_per_chunk
        self.canvas_size = max(self.image_shape)
        self.num_detectors = math.ceil(math.sqrt(2) * self.canvas_size)
        self.angles = torch.arange(self.num_views, dtype=torch.float64) * (math.pi / self.num_views)

    def _canvas_padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding that makes the image square."""
        height, width = self.image_shape
        extra_rows, extra_columns = self.canvas_size - height, self.canvas_size - width
        return extra_columns // 2, extra_columns - extra_columns // 2, extra_rows // 2, extra_rows - extra_rows // 2

    def _first_quadrant_angle_chunks(self, device: torch.device) -> list[torch.Tensor]:
        chunk = self.views_per_chunk or (CPU_VIEWS_PER_CHUNK if device.type == "cpu" else ACCELERATOR_VIEWS_PER_CHUNK)
        return list(self.angles[: self.num_views // 2].to(device=device, dtype=torch.float32).split(chunk))

    def _centred_coordinates(self, count: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.arange(count, device=device, dtype=dtype) - (count - 1) / 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Line integrals (B, num_views, num_detectors) of images (B, 1, H, W), in pixel-value x pixel units."""
        if images.ndim != 4 or images.shape[1] != 1 or tuple(images.shape[2:]) != self.image_shape:
            raise ValueError(f"expected images shaped (B, 1, {self.image_shape[0]}, {self.image_shape[1]}), got {tuple(images.shape)}")
        batch, device, dtype = images.shape[0], images.device, images.dtype
        canvas = F.pad(images, self._canvas_padding())
        pair = torch.cat([canvas, _quarter_turn(canvas)], dim=0).reshape(1, 2 * batch, self.canvas_size, self.canvas_size)
        # (t, s) = (detector, ray) coordinates of the rotated frame, in the canvas' normalised units
        frame = self._centred_coordinates(self.num_detectors, device, dtype) * (2.0 / self.canvas_size)
        along_ray, along_detector = torch.meshgrid(frame, frame, indexing="ij")
        frame_points = torch.stack([along_detector, along_ray], dim=-1).reshape(-1, 2)
        first_half, second_half = [], []
        for angles in self._first_quadrant_angle_chunks(device):
            cos, sin = torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)
            rotation = torch.stack([torch.stack([cos, sin], dim=-1), torch.stack([-sin, cos], dim=-1)], dim=1)  # (K, 2, 2)
            # (x, y) = t (cos, sin) + s (-sin, cos); einsum is about 3x faster than affine_grid on CPU for this
            grid = torch.einsum("pc,kcd->kpd", frame_points, rotation).reshape(len(angles), self.num_detectors, self.num_detectors, 2)
            rotated = F.grid_sample(pair.expand(len(angles), -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            views = rotated.sum(dim=2).transpose(0, 1)  # (2B, K, D)
            first_half.append(views[:batch])
            second_half.append(views[batch:])
        return torch.cat(first_half + second_half, dim=1)

    def filter_sinogram(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Apply the FBP filter along the detector axis, zero-padded against circular-convolution wrap-around."""
        padded_length = max(64, 2 ** math.ceil(math.log2(2 * self.num_detectors)))
        response = fbp_filter_response(padded_length, self.filter_name, sinogram.device).to(sinogram.dtype)
        spectrum = torch.fft.rfft(sinogram, n=padded_length, dim=-1) * response[: padded_length // 2 + 1]
        return torch.fft.irfft(spectrum, n=padded_length, dim=-1)[..., : self.num_detectors]

    def backproject(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Back-projection (B, 1, H, W) of sinograms (B, num_views, num_detectors), scaled by pi / num_views."""
        if sinogram.ndim != 3 or tuple(sinogram.shape[1:]) != (self.num_views, self.num_detectors):
            raise ValueError(f"expected sinograms shaped (B, {self.num_views}, {self.num_detectors}), got {tuple(sinogram.shape)}")
        batch, device, dtype = sinogram.shape[0], sinogram.device, sinogram.dtype
        half = self.num_views // 2
        pair = torch.cat([sinogram[:, :half], sinogram[:, half:]], dim=0)  # (2B, V/2, D)
        # pixel centres scaled so that grid_sample reads detector bin i at normalised (2 i + 1) / D - 1, i.e. at 2 t / D
        coordinate = self._centred_coordinates(self.canvas_size, device, dtype) * (2.0 / self.num_detectors)
        row, column = torch.meshgrid(coordinate, coordinate, indexing="ij")
        pixel_points = torch.stack([column, row], dim=-1).reshape(-1, 2)
        canvas = torch.zeros(2 * batch, self.canvas_size, self.canvas_size, device=device, dtype=dtype)
        first_view = 0
        for angles in self._first_quadrant_angle_chunks(device):
            count = len(angles)
            cos, sin = torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)
            zero = torch.zeros_like(cos)
            # grid (t, 0) with t = x cos + y sin: the 1-pixel-high view is read along its only row
            projection = torch.stack([torch.stack([cos, zero], dim=-1), torch.stack([sin, zero], dim=-1)], dim=1)
            grid = torch.einsum("pc,kcd->kpd", pixel_points, projection).reshape(count, self.canvas_size, self.canvas_size, 2)
            views = pair[:, first_view : first_view + count].transpose(0, 1).unsqueeze(2)  # (K, 2B, 1, D)
            canvas += F.grid_sample(views, grid, mode="bilinear", padding_mode="zeros", align_corners=False).sum(dim=0)
            first_view += count
        canvas = canvas[:batch] + _undo_quarter_turn(canvas[batch:])
        left, right, top, bottom = self._canvas_padding()
        image = canvas[:, top : self.canvas_size - bottom, left : self.canvas_size - right]
        return image.unsqueeze(1) * (math.pi / self.num_views)

    def fbp(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Filtered back-projection: images (B, 1, H, W) from sinograms (B, num_views, num_detectors)."""
        return self.backproject(self.filter_sinogram(sinogram))
