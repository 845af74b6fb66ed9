"""A paired datalist from one full-dose volume: contiguous z-blocks per split, simulated low dose per slab.

Real Mayo pairs are scarce; a whole full-dose volume of the right domain (e.g. Mayo L067, 3 mm) with the calibrated
low-dose simulation is the next best training and benchmark set. Neighbouring slabs share anatomy, so splitting
slabs at random would leak the test anatomy into training: the volume is cut into contiguous blocks along z, one
per split, with ``gap`` slabs left unused between blocks.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import SpatialImage
from tqdm import tqdm

from custom.conventions import (
    BODY_THRESHOLD_HU,
    DATALIST_NAME,
    DOSE_FRACTION_KEY,
    FULL_DOSE_KEY,
    LOW_DOSE_KEY,
    PATIENT_KEY,
    SPLITS,
)
from custom.data.mayo import check_output_outside_input
from custom.data.simulated_pairs import InputError, require_body
from custom.io.atomic_output import atomic_output, write_text_atomically
from custom.simulation.low_dose import SimulateLowDose
from custom.simulation.options import simulator_from_args

DEFAULT_FRACTIONS = {"training": 0.7, "validation": 0.1, "test": 0.2}
DEFAULT_GAP = 2
SPLIT_INFO_NAME = "split_info.json"


def zblock_split(
    num_slabs: int, fractions: dict[str, float] | None = None, gap: int = DEFAULT_GAP, order: Sequence[str] = SPLITS
) -> dict[str, list[int]]:
    """Slab indices per split: contiguous blocks in ``order`` along z, ``gap`` unused slabs between neighbours.

    Every split named in ``fractions`` with a positive fraction gets at least one slab.
    """
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    if gap < 0:
        raise ValueError(f"gap must be >= 0 slabs, got {gap}")
    if sorted(order) != sorted(fractions):
        raise ValueError(f"order {list(order)} must name the same splits as fractions {sorted(fractions)}")
    if any(value < 0 for value in fractions.values()) or not sum(fractions.values()):
        raise ValueError(f"fractions must be non-negative with a positive sum, got {fractions}")
    used = [name for name in order if fractions[name] > 0]
    usable = num_slabs - gap * (len(used) - 1)
    if usable < len(used):
        raise ValueError(f"{num_slabs} slabs cannot hold {len(used)} blocks with gaps of {gap} slabs")
    total = sum(fractions[name] for name in used)
    sizes = [max(1, round(usable * fractions[name] / total)) for name in used]
    sizes[int(np.argmax(sizes))] += usable - sum(sizes)  # rounding remainder to the largest block
    blocks: dict[str, list[int]] = {name: [] for name in order}
    start = 0
    for name, size in zip(used, sizes):
        blocks[name] = list(range(start, start + size))
        start += size + gap
    return blocks


def load_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """HU volume (X, Y, Z) float32 and its 4x4 affine, with a clear error for anything that is not a 3D CT NIfTI."""
    try:
        image = cast(SpatialImage, nib.load(str(path)))  # a NIfTI loads as a SpatialImage (dataobj, affine)
        volume = np.asarray(image.dataobj, dtype=np.float32)
    except (OSError, ValueError, ImageFileError) as error:
        raise InputError(f"{path}: unreadable NIfTI volume ({error})") from error
    if volume.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {volume.shape}")
    if not np.isfinite(volume).all():
        raise InputError(f"{path}: the volume holds NaN or infinite voxels")
    if volume.min() > BODY_THRESHOLD_HU or volume.max() < 0:
        raise InputError(f"{path}: values [{volume.min():g}, {volume.max():g}] do not look like CT in HU")
    return volume, np.asarray(image.affine, dtype=np.float64)


def slab_affine(affine: np.ndarray, index: int) -> np.ndarray:
    """The volume's affine moved to slab ``index``: the 2D slice keeps the volume's in-plane geometry."""
    moved = affine.copy()
    moved[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, float(index)]) + affine[:3, 3]
    return moved


def write_slab(hu: np.ndarray, affine: np.ndarray, target: Path) -> None:
    """One float32 HU slab as a 2D NIfTI, written atomically."""
    with atomic_output(target) as temporary:
        nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), str(temporary))


def training_doses(
    simulator: SimulateLowDose, training_realisations: int, training_dose_fractions: Sequence[float] | None
) -> list[float]:
    """The dose of every training realisation; ValueError naming the bad setting, before any slab is simulated."""
    if training_dose_fractions is None:
        if training_realisations < 1:
            raise ValueError(f"training_realisations must be >= 1, got {training_realisations}")
        return [float(simulator.simulation_settings["dose_fraction"])] * training_realisations
    doses = [float(dose) for dose in training_dose_fractions]
    if not doses or not all(0.0 < dose < 1.0 for dose in doses):
        raise ValueError(f"training_dose_fractions must be one or more doses in (0, 1), got {doses}")
    if training_realisations not in (1, len(doses)):
        raise ValueError(
            f"training_realisations ({training_realisations}) must match training_dose_fractions ({len(doses)} doses)"
        )
    return doses


def build_volume_datalist(
    volume_path: Path,
    output_dir: Path,
    simulator: SimulateLowDose,
    fractions: dict[str, float] | None = None,
    gap: int = DEFAULT_GAP,
    order: Sequence[str] = SPLITS,
    patient: str | None = None,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    training_realisations: int = 1,
    training_dose_fractions: Sequence[float] | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Write full-dose and simulated low-dose NIfTI slabs of ``volume_path`` and the z-block datalist beside them.

    The datalist is written last and atomically: an interrupted run leaves no datalist that points at missing files.
    ``seed`` reseeds ``simulator`` first (and is recorded), so the same call gives the same pairs. Training slabs
    get ``training_realisations`` independent low-dose partners (one entry each), so that a model sees more noise
    than anatomy repeats; validation and test slabs get one, at the simulator's dose. ``training_dose_fractions``
    gives each training realisation a dose of its own (one per realisation, replacing ``training_realisations``):
    a network trained at one noise level is a fixed-strength smoother that blurs anatomy where the noise is lower
    (thinner body parts, higher doses), one trained across doses learns to denoise as much as the image needs.
    """
    doses = training_doses(simulator, training_realisations, training_dose_fractions)
    check_output_outside_input(volume_path.parent, output_dir)
    volume, affine = load_volume(volume_path)
    if seed is not None:
        simulator.set_random_state(seed=seed)
    blocks = zblock_split(volume.shape[2], fractions, gap, order)
    patient = patient or volume_path.name.split(".")[0]
    datalist: dict[str, list[dict[str, str]]] = {split: [] for split in blocks}
    jobs = [(split, index) for split, indices in blocks.items() for index in indices]
    for _, index in jobs:  # every slab checked before any output
        require_body(volume[:, :, index], f"{volume_path}: slab {index}")
    for split, index in tqdm(jobs, desc=f"simulating {volume_path.name}", unit="slab"):
        hu, slab = volume[:, :, index], slab_affine(affine, index)
        full_dose_path = output_dir / FULL_DOSE_KEY / split / f"{patient}_{index:04d}.nii.gz"
        write_slab(hu, slab, full_dose_path)
        image = MetaTensor(torch.from_numpy(np.ascontiguousarray(hu))[None], affine=torch.as_tensor(slab)).to(device)
        split_doses = doses if split == "training" else [simulator.simulation_settings["dose_fraction"]]
        for realisation, dose in enumerate(split_doses):
            try:
                low_dose = torch.as_tensor(simulator(image, dose_fraction=dose)).cpu().numpy()[0]
            except ValueError as error:
                raise InputError(f"{volume_path}: slab {index}: {error}") from error
            suffix = f"_{realisation}" if len(split_doses) > 1 else ""
            low_dose_path = output_dir / LOW_DOSE_KEY / split / f"{patient}_{index:04d}{suffix}.nii.gz"
            write_slab(low_dose, slab, low_dose_path)
            datalist[split].append(
                {
                    PATIENT_KEY: patient,
                    "slab": str(index),
                    FULL_DOSE_KEY: str(full_dose_path.relative_to(output_dir)),
                    LOW_DOSE_KEY: str(low_dose_path.relative_to(output_dir)),
                    DOSE_FRACTION_KEY: f"{dose:g}",
                }
            )
    split_info = {
        "volume": str(volume_path),
        "gap_slabs": gap,
        "training_realisations": len(doses),
        "training_dose_fractions": doses,
        "blocks": {split: [indices[0], indices[-1]] for split, indices in blocks.items() if indices},
        "simulation": {**simulator.simulation_settings, "seed": seed},
    }
    write_text_atomically(output_dir / SPLIT_INFO_NAME, json.dumps(split_info, indent=2))
    write_text_atomically(output_dir / DATALIST_NAME, json.dumps(datalist, indent=2))
    return datalist


def run(args: argparse.Namespace) -> dict[str, list[dict[str, str]]]:
    """``scripts/prepare_volume.py``: settings are checked (ValueError naming the parameter) before any slab is written."""
    simulator = simulator_from_args(args)
    fractions = {"training": args.train_fraction, "validation": args.val_fraction, "test": args.test_fraction}
    return build_volume_datalist(
        args.volume,
        args.output_dir,
        simulator,
        fractions,
        args.gap,
        args.order,
        args.patient,
        args.device,
        args.seed,
        args.training_realisations,
        args.training_dose_fractions,
    )
