"""ldct_effnetv2_wgangp: what MONAI, ignite, timm and pydicom lack for low-dose CT denoising, room by room.

``conventions`` (HU windows, datalist keys, paths), ``networks``, ``losses``, ``engines`` (training), ``simulation``
(low-dose physics), ``data`` (datalists and datasets), ``io`` (DICOM/NIfTI read and write), ``inference``,
``evaluation`` (metrics, reports, benchmarks), ``deploy`` (export, MONAI Deploy), ``tracking`` (MLflow).
Arrows run one way: scripts -> package; engines -> networks/losses; nothing imports scripts.
"""

import logging
import warnings

# MONAI falls back to pydicom's own decoders when the optional GPU decoder nvImageCodec is absent, and says so on
# every start and DICOM read; nothing for a user to act on (bundle/configs/logging.conf does the same for bundle runs).
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader", category=UserWarning)
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)

from custom.errors import install_hook  # noqa: E402  (after the filters: importing it pulls nothing heavy)

install_hook()
