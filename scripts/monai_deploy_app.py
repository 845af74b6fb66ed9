"""Command line of the MONAI Deploy application in `custom.deploy.deploy_app`; `--help` prints its description."""

from __future__ import annotations

import argparse
from pathlib import Path

try:
    from custom.deploy import deploy_app
except ImportError as error:
    raise SystemExit(str(error)) from error


def main() -> None:
    """Check the command line here, because Holoscan's `--help` lists only its own options, then run the app.

    The app reads `sys.argv` itself (Holoscan and the SDK each parse it), so this only validates it.
    """
    parser = argparse.ArgumentParser(description=deploy_app.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", type=Path, help="folder of DICOM files (default: $HOLOSCAN_INPUT_PATH)")
    parser.add_argument("-o", "--output", type=Path, help="folder for the denoised series ($HOLOSCAN_OUTPUT_PATH)")
    parser.add_argument("-m", "--model", type=Path, help="TorchScript bundle model.ts ($HOLOSCAN_MODEL_PATH)")
    parser.add_argument("-l", "--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"])
    parsed = parser.parse_args()
    for name in ("input", "model"):
        path = getattr(parsed, name)
        if path is not None and not path.exists():
            parser.error(f"--{name} '{path}' does not exist")
    deploy_app.CTDenoisingApp().run()


if __name__ == "__main__":
    main()
