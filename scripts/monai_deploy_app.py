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

import argparse
from pathlib import Path

try:
    from custom.deploy.deploy_app import CTDenoisingApp
except ImportError as error:
    raise SystemExit(str(error)) from error


def main() -> None:
    """Check the command line here, because Holoscan's `--help` lists only its own options, then run the app.

    The app reads `sys.argv` itself (Holoscan and the SDK each parse it), so this only validates it.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", type=Path, help="folder of DICOM files (default: $HOLOSCAN_INPUT_PATH)")
    parser.add_argument("-o", "--output", type=Path, help="folder for the denoised series ($HOLOSCAN_OUTPUT_PATH)")
    parser.add_argument("-m", "--model", type=Path, help="TorchScript bundle model.ts ($HOLOSCAN_MODEL_PATH)")
    parser.add_argument("-l", "--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"])
    parsed = parser.parse_args()
    for name in ("input", "model"):
        path = getattr(parsed, name)
        if path is not None and not path.exists():
            parser.error(f"--{name} '{path}' does not exist")
    CTDenoisingApp().run()


if __name__ == "__main__":
    main()
