"""Write a model file in half precision (or another dtype), with its network record: how the shipped model is made.

    python scripts/export_model_file.py bundle/models/model.pt bundle/models/shipped/model.pt

The input is any model file of this bundle (the trained bundle/models/model.pt holds the EMA generator and its
record) or a bare state_dict with --backbone. The output is rebuilt from the record, loaded, checked against the
input on a random slice (largest difference printed, in HU) and written atomically; an existing output is kept
unless --force. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from custom.networks.model_file import ModelFileError, export_model_file


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="model file to read")
    parser.add_argument("target", type=Path, help="model file to write")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    parser.add_argument("--backbone", help="backbone of a bare state_dict without record")
    parser.add_argument("--force", action="store_true", help="replace an existing target")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = export_model_file(args.source, args.target, args.dtype, args.backbone, args.force)
    except (ModelFileError, FileExistsError) as error:
        print(f"export_model_file: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
