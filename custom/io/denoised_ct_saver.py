"""Save each denoised CT volume as NIfTI in its input geometry and, for DICOM input, as a derived DICOM series.

Layout: `output_dir/<output_name>/<output_name>_denoised.nii.gz` and `output_dir/<output_name>/dicom/slice_*.dcm`.
NIfTI goes through MONAI's `SaveImage`/`NibabelWriter` (the affine of the loaded image, no resampling); every file
is written to a hidden temporary file first and renamed into place.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor, NibabelWriter
from monai.transforms import MapTransform, SaveImage

from custom.io.atomic_output import atomic_output
from custom.io.ct_series_loader import DICOM_FILES_KEY, OUTPUT_NAME_KEY
from custom.io.dicom_series_writer import DEFAULT_DERIVATION, write_denoised_series

logger = logging.getLogger(__name__)

NIFTI_POSTFIX = "denoised"
DICOM_FOLDER = "dicom"


class AtomicNibabelWriter(NibabelWriter):
    """`NibabelWriter` that writes a temporary file next to the target and renames it into place."""

    def write(self, filename: str | os.PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        with atomic_output(Path(filename)) as temporary:
            super().write(temporary, verbose=verbose, **obj_kwargs)


class SaveDenoisedCTd(MapTransform):
    """Write the HU volume under each key to `output_dir/<data[name_key]>/` (NIfTI, plus DICOM for DICOM input).

    Args:
        keys: keys of channel-first HU volumes (MetaTensor with the input's affine; `dicom_files` in the metadata
            when the input was a DICOM series, see `custom.io.ct_series_loader.CTSeriesReader`).
        output_dir: root folder of the outputs.
        name_key: data key holding the output folder name (`custom.io.ct_series_loader.list_inference_inputs`).
        write_dicom: also write a DICOM series for DICOM input.
        derivation_description: DerivationDescription of the DICOM output.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        output_dir: str | os.PathLike,
        name_key: str = OUTPUT_NAME_KEY,
        write_dicom: bool = True,
        derivation_description: str = DEFAULT_DERIVATION,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.name_key = name_key
        self.write_dicom = write_dicom
        self.derivation_description = derivation_description
        self.nifti_saver = SaveImage(
            output_ext=".nii.gz", output_dtype=np.float32, resample=False, writer=AtomicNibabelWriter, print_log=False
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        name = d[self.name_key]
        for key in self.key_iterator(d):
            volume: MetaTensor = d[key]
            folder = self.output_dir / name
            nifti_stem = folder / f"{name}_{NIFTI_POSTFIX}"
            self.nifti_saver(volume, filename=nifti_stem)
            logger.info("saved %s.nii.gz", nifti_stem)
            dicom_files = volume.meta.get(DICOM_FILES_KEY)
            if self.write_dicom and dicom_files:
                slices_rows_columns = torch.as_tensor(volume)[0].permute(2, 1, 0).cpu().numpy()
                written = write_denoised_series(
                    slices_rows_columns, dicom_files, folder / DICOM_FOLDER, self.derivation_description
                )
                logger.info("saved %d DICOM slices in %s", len(written), folder / DICOM_FOLDER)
        return d
