"""Per-series dose fractions for the real full-dose CT the project simulates low dose from."""

# Dose fractions that give every series the noise of real Mayo quarter dose: about 26 HU inserted local noise (10th
# percentile of the 15x15 local std in soft tissue; L067's calibrated quarter dose inserts 25.4 HU). The simulation
# has a fixed flux and no exposure control, so at one quarter the large TotalSegmentator abdomen (water-equivalent
# diameter 341 mm against L067's 282 mm) gets 57 HU, the GE liver 35 HU and the small heads 8-12 HU. Measured on 3
# slices per series at the calibrated defaults: TotalSegmentator 26 HU at 0.6, GE liver 26 HU at 0.375, GE head
# 16-35 HU (mean 27) at 0.04. Inserted noise variance goes as (1 - d) / d. A real scanner's exposure control does
# the same for its patients; here a denoiser trained on one noise level would otherwise be scored on another.
SERIES_DOSE_FRACTIONS = {
    "totalsegmentator_abdomen_siemens": 0.6,
    "dcmqi_ct3slice_GE_liver": 0.375,
    "dcm_qa_ct_GE_head": 0.04,
    "dcm_qa_ct_Philips_headphantom": 0.04,
}
