"""ldct_effnetv2_wgangp: what MONAI, ignite, timm and pydicom lack for low-dose CT denoising, room by room.

``conventions`` (HU windows, datalist keys, paths), ``networks``, ``losses``, ``engines`` (training), ``simulation``
(low-dose physics), ``data`` (datalists and datasets), ``io`` (DICOM/NIfTI read and write), ``inference``,
``evaluation`` (metrics, reports, benchmarks), ``deploy`` (export, MONAI Deploy), ``tracking`` (MLflow).
Arrows run one way: scripts -> package; engines -> networks/losses; nothing imports scripts.
"""
