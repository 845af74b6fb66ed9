"""MONAI Deploy application: denoise a low-dose CT DICOM series with the bundle and write a derived DICOM series.

    python scripts/monai_deploy_app.py -i <folder of DICOM files> -o <output folder> -m bundle/models/model.ts

The model is the TorchScript bundle from `python -m monai.bundle ckpt_export network_def ...` (weights, metadata.json
and inference.json in one file); the bundle's own preprocessing, slice-by-slice inferer and postprocessing run
inside `HUPreservingBundleInferenceOperator`. The first CT series found in the input is denoised and written to the
output folder as `slice_0001.dcm` ... by `custom.io.dicom_series_writer`, one derived slice per source slice (same
patient and study, new series, ImageType DERIVED\\SECONDARY). The same paths can come from the App SDK's
environment variables HOLOSCAN_INPUT_PATH, HOLOSCAN_OUTPUT_PATH and HOLOSCAN_MODEL_PATH.

Needs `monai-deploy-app-sdk` (and the Holoscan SDK it installs), which the project does not require; see the
model card. Installed next to MONAI, the SDK is imported by every `import monai`, so use a separate environment.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

try:
    from monai.deploy.conditions import CountCondition
    from monai.deploy.core import Application, Fragment, Image, IOType, Operator, OperatorSpec
    from monai.deploy.operators import (
        DICOMDataLoaderOperator,
        DICOMSeriesSelectorOperator,
        DICOMSeriesToVolumeOperator,
        IOMapping,
    )
except ImportError as error:
    raise ImportError(
        f"this application needs the MONAI Deploy App SDK: pip install monai-deploy-app-sdk highdicom, in an "
        f"environment of its own (see the model card). Import failed: {error}"
    ) from error

from custom.deploy.hu_preserving_bundle_operator import HUPreservingBundleInferenceOperator
from custom.io.dicom_series_writer import write_denoised_series

# the first series whose Modality is CT; the bundle denoises CT only
CT_SERIES_RULES = json.dumps({"selections": [{"name": "CT series", "conditions": {"Modality": "(?i)CT"}}]})


class DenoisedSeriesWriterOperator(Operator):
    """Write the denoised HU volume as a series derived from the selected source series, slice by slice.

    The volume arrives in the order `DICOMSeriesToVolumeOperator` sorted the source instances into, so slice i is
    derived from the i-th instance of the selected series.
    """

    def __init__(self, fragment: Fragment, *args, output_folder: Path, **kwargs) -> None:
        self.output_folder = Path(output_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("image")
        spec.input("study_selected_series_list")

    def compute(self, op_input, op_output, context) -> None:
        image: Image = op_input.receive("image")
        selection = op_input.receive("study_selected_series_list")
        if not selection or not selection[0].selected_series:
            raise ValueError("no CT series was selected from the input, so there is nothing to write")
        series = selection[0].selected_series[0].series
        source_files = [instance.get_native_sop_instance().filename for instance in series.get_sop_instances()]
        written = write_denoised_series(image.asnumpy(), source_files, self.output_folder)
        logging.info(f"wrote {len(written)} denoised slices to {self.output_folder}")


class CTDenoisingApp(Application):
    """DICOM series in, denoised DICOM series out, with the bundle's TorchScript model."""

    def compose(self) -> None:
        app_context = Application.init_app_context(self.argv)
        loader = DICOMDataLoaderOperator(
            self, CountCondition(self, 1), input_folder=Path(app_context.input_path), name="dicom_loader"
        )
        selector = DICOMSeriesSelectorOperator(self, rules=CT_SERIES_RULES, name="ct_series_selector")
        to_volume = DICOMSeriesToVolumeOperator(self, name="series_to_volume")
        denoiser = HUPreservingBundleInferenceOperator(
            self,
            input_mapping=[IOMapping("image", Image, IOType.IN_MEMORY)],
            output_mapping=[IOMapping("pred", Image, IOType.IN_MEMORY)],
            app_context=app_context,
            name="bundle_denoiser",
        )
        writer = DenoisedSeriesWriterOperator(self, output_folder=Path(app_context.output_path), name="dicom_writer")
        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(to_volume, denoiser, {("image", "image")})
        self.add_flow(denoiser, writer, {("pred", "image")})
        self.add_flow(selector, writer, {("study_selected_series_list", "study_selected_series_list")})
