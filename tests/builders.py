"""Test data builders shared by several test rooms: real-CT DICOM series, a tiny perturbed generator, a noisy abdomen
phantom, a tiny paired datalist."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
import torch
from monai.bundle import ckpt_export
from pydicom.uid import generate_uid

from custom.conventions import INFERENCE_CONFIG, META_FILE, MODEL_HU_WINDOW
from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.model_file import WEIGHTS_KEY, save_model_file

TINY_BACKBONE = "tf_efficientnetv2_b0"
CT_SMALL = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
MR_SMALL = Path(pydicom.data.get_testdata_file("MR_small.dcm"))
RT_PLAN = Path(pydicom.data.get_testdata_file("rtplan.dcm"))
SLICE_GAP_MM = 5.0
HU_SPAN = MODEL_HU_WINDOW[1] - MODEL_HU_WINDOW[0]
Scalable = TypeVar("Scalable", float, np.ndarray, torch.Tensor)


def to_model_scale(hu: Scalable) -> Scalable:
    """HU to the network's [0, 1] scale (the model's HU window), as the bundle's preprocessing gives it."""
    return (hu - MODEL_HU_WINDOW[0]) / HU_SPAN


def wait_while_running(process: subprocess.Popen, done: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Polls `done` while `process` runs, so a kill lands after `what` however busy the machine; fails (killing the
    process on a timeout) if the process ends first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}")
        if time.monotonic() >= deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"no {what} within {timeout_s:g} s")
        time.sleep(0.02)


def write_ct_series(folder: Path, positions: list[float], series_uid: str | None = None) -> list[Path]:
    """Copies of the real CT_small slice as one series, slice i at z = positions[i] with its rows rolled by 8 * i
    (so every slice differs and a mix-up shows); files and InstanceNumbers run opposite to the positions."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    files = []
    for index, z in enumerate(positions):
        dataset = pydicom.dcmread(CT_SMALL)
        dataset.PixelData = np.roll(dataset.pixel_array, 8 * index, axis=0).tobytes()
        dataset.ImagePositionPatient = [*dataset.ImagePositionPatient[:2], z]
        dataset.InstanceNumber = len(positions) - index
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        path = folder / f"slice_{len(positions) - index:03d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def edit(path: Path, **tags: object) -> None:
    """Set (value) or delete (None) tags of a DICOM file in place."""
    dataset = pydicom.dcmread(path)
    for keyword, value in tags.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=True)


def perturbed_tiny_generator(seed: int = 0) -> EfficientNetV2Denoiser:
    """A random tf_efficientnetv2_b0 generator whose noise head is random too, in eval mode."""
    torch.manual_seed(seed)
    network = EfficientNetV2Denoiser(backbone=TINY_BACKBONE)
    torch.nn.init.normal_(network.noise_head.weight, std=0.02)
    torch.nn.init.normal_(network.noise_head.bias, std=0.01)
    return network.eval()


def export_torchscript_bundle(network: torch.nn.Module, folder: Path) -> Path:
    """Save `network` as model.pt and export it with `ckpt_export` and the bundle's inference config."""
    ckpt_file = save_model_file(folder / "model.pt", network)
    ts_file = folder / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_file),
        ckpt_file=str(ckpt_file),
        key_in_ckpt=WEIGHTS_KEY,
        meta_file=str(META_FILE),
        config_file=str(INFERENCE_CONFIG),
        model_path=str(ckpt_file),
    )
    return ts_file


def abdomen_phantom(seed: int, size: int = 160, noise_hu: float = 25.0) -> np.ndarray:
    """Air, a soft-tissue body (40 HU) in a fat layer (-100 HU, 9 % of the size: 10 mm at 160 x 0.7 mm) holding an
    enhanced organ (170 HU), plus white noise."""
    rows, columns = (np.mgrid[:size, :size] - size / 2) / size
    radius = np.hypot(rows, columns)
    hu = np.where(radius < 0.46, -100.0, -1000.0)
    hu[radius < 0.375] = 40.0
    hu[((rows + 0.075) / 0.11) ** 2 + ((columns - 0.06) / 0.16) ** 2 < 1] = 170.0
    return hu + np.random.default_rng(seed).normal(0.0, noise_hu, hu.shape)


def write_synthetic_datalist(folder: Path) -> Path:
    """A tiny paired datalist: 64x64 HU phantoms (water disc, a lesion) with white noise as the low dose."""
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[:64, :64]
    content: dict[str, list[dict[str, str]]] = {}
    for split, count in (("training", 3), ("validation", 2), ("test", 3)):
        content[split] = []
        for index in range(count):
            full = np.where((rows - 32) ** 2 + (columns - 32) ** 2 < 26**2, 40.0, -1000.0)
            full += 60 * np.exp(-((rows - 20 - 3 * index) ** 2 + (columns - 30) ** 2) / 30)
            low = full + rng.normal(0, 30, full.shape)
            pair = {"low_dose": f"{split}{index}_low.nii.gz", "full_dose": f"{split}{index}_full.nii.gz"}
            for key, image in (("low_dose", low), ("full_dose", full)):
                nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), folder / pair[key])
            content[split].append({**pair, "patient": f"{split}{index}"})
    path = folder / "datalist.json"
    path.write_text(json.dumps(content))
    return path
