"""A MONAI Label app that serves this bundle as a denoiser: one image-to-image model, no trainer.

MONAI Label's stock `monaibundle` app types every bundle it cannot name as segmentation, filters only `SaveImaged`
and loads weights leniently (a key mismatch leaves a random network running). This app declares the model as
`others` (MONAI Label has no image-to-image type), publishes no label names, loads the weights strictly and returns
float32 HU on the input's grid. Training stays with `python -m monai.bundle run training`: MONAI Label's trainer
expects segmentation labels.

The packaged bundle (`scripts/package_bundle.py`) carries this folder as `monai_label_app/`; started from there it
serves its own bundle:

    monailabel start_server --app PACKAGE/monai_label_app --studies VOLUMES_DIR
    monailabel start_server --app monai_label_app --studies VOLUMES_DIR --conf bundle PACKAGE   # any bundle folder

then `POST /infer/ldct_effnetv2_wgangp?image=<volume id>&output=image` returns the denoised volume. Runs in an
environment with monailabel (0.8.5: pydicom < 3); `scripts/check_monai_label.sh` builds one and tests this app.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import monailabel
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.tasks.infer.bundle import BundleInferTask

logger = logging.getLogger(__name__)

BUNDLE_CONF = "bundle"  # --conf bundle PATH: the bundle folder to serve (default: the folder holding this app)
REQUIRED_FILES = ("configs/inference.json", "configs/metadata.json", "models/model.pt")


def bundle_folder(app_dir: str, conf: dict[str, str]) -> Path:
    """The bundle to serve, checked before the server starts: a clear message instead of MONAI Label's warning
    and an empty model list."""
    folder = Path(conf.get(BUNDLE_CONF) or Path(app_dir).resolve().parent).expanduser().resolve()
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"'{folder}' is not a packaged ldct bundle (missing {', '.join(missing)}): build one with "
            f"scripts/package_bundle.py and start the app inside it, or pass --conf {BUNDLE_CONF} PATH"
        )
    return folder


class DenoisingBundleInferTask(BundleInferTask):
    """The bundle's `inference.json` pre/postprocessing and inferer; the result is an image, not a label map."""

    def __init__(self, path: Path, conf: dict[str, str]) -> None:
        super().__init__(str(path), conf, type=InferType.OTHERS, load_strict=True)
        if not self.is_valid():
            raise ValueError(f"MONAI Label could not load the bundle '{path}' (see its log above)")
        self.labels: dict[str, int] = {}  # metadata's channel_def describes the output's scale; it names no class
        outputs = json.loads((path / "configs" / "metadata.json").read_text())["network_data_format"]["outputs"]
        self._output_description = next(iter(outputs.values()))["channel_def"]["0"]

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "output": "image: denoised CT, float32 HU, the input's grid",
            "output_scale": self._output_description,
        }


class DenoisingApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundle = bundle_folder(app_dir, conf)
        metadata = json.loads((self.bundle / "configs" / "metadata.json").read_text())
        self.model_name = metadata.get("name", self.bundle.name)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"{self.model_name} (MONAI Label {monailabel.__version__})",
            description=metadata.get("description", ""),
            version=metadata.get("version", ""),
        )

    def init_infers(self) -> dict[str, InferTask]:
        task = DenoisingBundleInferTask(self.bundle, self.conf)
        logger.info(f"+++ Adding denoiser {self.model_name} from {self.bundle}")
        return {self.model_name: task}
