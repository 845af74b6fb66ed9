"""MONAI Deploy inference operator for bundles whose output is an image in Hounsfield units.

The App SDK's `MonaiBundleInferenceOperator` was written for segmentation bundles: it casts every image output to
uint8, which turns denoised HU (-1024 ... 3072) into wrapped garbage. This subclass keeps the output as float32 HU
in the SDK's `Image` layout (slices, rows, columns), ready for a DICOM writer, and adapts the generic operator to
this bundle's `inference.json` the way `monai.bundle run` uses it: the file loader is dropped (the SDK hands over an
`Image`), only the image reaches the network, and postprocessing sees one channel-first item, not a batch.

The SDK is optional (it pulls in Holoscan): without it this module still imports, `hu_volume_for_dicom` works and
constructing the operator raises an error that says to install `monai-deploy-app-sdk`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.transforms import Compose, LoadImage, LoadImaged, SaveImage, SaveImaged
from monai.utils import optional_import

_BundleOperatorBase, HAS_DEPLOY_SDK = optional_import(
    "monai.deploy.operators", name="MonaiBundleInferenceOperator", as_type="base"
)
if TYPE_CHECKING:  # optional_import gives a variable, which mypy does not accept as a base class
    from monai.deploy.operators import MonaiBundleInferenceOperator
else:
    MonaiBundleInferenceOperator = _BundleOperatorBase
Image, _ = optional_import("monai.deploy.core", name="Image")

# the SDK hands the operator an in-memory Image; a file reader or writer in the bundle's transforms cannot run
FILE_IO_TRANSFORMS = (LoadImage, LoadImaged, SaveImage, SaveImaged)


def hu_volume_for_dicom(value: torch.Tensor | np.ndarray, name: str = "pred") -> np.ndarray:
    """A channel-first HU output, (1, W, H) or (1, W, H, D), as float32 in the SDK `Image` order (H, W) or (D, H, W).

    This is the SDK's own axis convention for outputs, minus its uint8 cast; non-finite values are refused because
    they have no stored-value equivalent in a DICOM image.
    """
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim not in (3, 4) or array.shape[0] != 1:
        raise ValueError(f"output '{name}' must be one channel-first 2D or 3D image, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"output '{name}' has NaN or infinite values; refusing to write them as HU")
    spatial = array[0].astype(np.float32)
    return np.ascontiguousarray(spatial if spatial.ndim == 2 else spatial.swapaxes(0, 2))


class HUPreservingBundleInferenceOperator(MonaiBundleInferenceOperator):
    """`MonaiBundleInferenceOperator` that emits image outputs as float32 HU instead of uint8 labels.

    Takes the same arguments as its parent (`app_context`, `input_mapping`, `output_mapping`, `bundle_path`, ...).
    The bundle is normally the TorchScript file from `monai.bundle ckpt_export` with `inference.json` inside.
    """

    def _get_compose(self, obj_name: str, disallowed_prefixes: list[str]) -> Compose:
        """The bundle's transforms without file readers and writers, including subclasses the SDK's name test misses."""
        compose = super()._get_compose(obj_name, disallowed_prefixes)
        compose.transforms = tuple(t for t in compose.transforms if not isinstance(t, FILE_IO_TRANSFORMS))
        return compose

    def predict(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the bundle's inferer on the image alone: the other preprocessed items are for postprocessing."""
        return self._inferer(inputs=data, network=self._model_network)

    def post_process(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """Postprocess the single item of the batch, as `monai.bundle run` does after decollating."""
        return super().post_process(data[0], *args, **kwargs)

    def _send_output(self, value: Any, name: str, metadata: dict, op_output: Any, context: Any) -> None:
        if self._get_io_data_type(self._outputs[name]) is not Image:
            super()._send_output(value, name, metadata, op_output, context)
            return
        op_output.emit(Image(hu_volume_for_dicom(value, name), metadata=metadata), name)
