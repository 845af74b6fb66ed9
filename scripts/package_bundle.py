"""Write a self-contained MONAI bundle (model-zoo layout) to a new folder.

    python scripts/package_bundle.py dist/ldct_effnetv2_wgangp [--model bundle/models/model.pt]

The folder holds configs/ (bundle_root "."), custom/ (the code the configs import), models/model.pt (default: the
shipped model), docs/, data/embedded/ (the default training data), LICENSE and requirements.txt; metadata.json
states the versions installed here. Run the bundle from inside it, e.g.
`python -m monai.bundle run --config_file configs/inference.json --input_dir scans/ --output_dir out/`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from custom.conventions import SHIPPED_MODEL_FILE
from custom.deploy.bundle_package import package_bundle
from custom.errors import BundleInputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="a new (or empty) folder for the bundle")
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL_FILE, help="model file to ship (default: the shipped model)")
    args = parser.parse_args(argv)
    try:
        folder = package_bundle(args.output, args.model)
    except BundleInputError as error:
        parser.error(str(error))
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
