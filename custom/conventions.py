"""The project's conventions, each defined once: HU windows and data ranges, datalist keys and names, default paths.

Every module, script, test and config that needs one of these imports it from here (configs through
``$import custom.conventions as conventions``), so changing a convention is a one-line change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# --- HU windows -------------------------------------------------------------------------------------------------
# The network sees HU clipped to this window and mapped linearly to [0, 1]: air padding at -1024, metal at 3072.
MODEL_HU_WINDOW: tuple[float, float] = (-1024.0, 3072.0)


@dataclass(frozen=True)
class EvaluationWindow:
    """A HU window in which images are clipped before PSNR/SSIM/RMSE; the data range is its width."""

    name: str
    low: float
    high: float

    @property
    def data_range(self) -> float:
        return self.high - self.low

    @property
    def label(self) -> str:
        return f"[{self.low:g}, {self.high:g}] HU, data range {self.data_range:g}"


# The literature's L506 convention (the paper's 33.24 dB): abdomen window [-160, 240] HU, data range 400.
PRIMARY_WINDOW = EvaluationWindow("w400", -160.0, 240.0)
WIDE_WINDOW = EvaluationWindow("w2000", -1000.0, 1000.0)
EVALUATION_WINDOWS: tuple[EvaluationWindow, ...] = (PRIMARY_WINDOW, WIDE_WINDOW)
HEADLINE_METRIC = f"psnr_{PRIMARY_WINDOW.name}"
# Soft tissue, fat to enhanced organs: where the quality benchmark compares the noise of its splits.
SOFT_TISSUE_HU: tuple[float, float] = (-160.0, 240.0)
# Organ tissue without fat (contrast-enhanced liver and spleen reach 110-135 HU in the Mayo scans): the flattest
# tissue, where noise level, NPS and mean shift are measured (custom.simulation.noise_texture).
ORGAN_TISSUE_HU: tuple[float, float] = (-20.0, 180.0)
# Bands of the full dose's HU in which score_model.py reports the error (custom.evaluation.tissue_error); they cover
# every value, so their shares of the squared error add up to the [-1000, 1000] PSNR's.
TISSUE_BANDS_HU: dict[str, tuple[float, float]] = {
    "air": (-float("inf"), -900.0),
    "lung": (-900.0, -500.0),
    "low_density": (-500.0, SOFT_TISSUE_HU[0]),  # air-tissue boundaries, the densest lung
    "soft_tissue": SOFT_TISSUE_HU,
    "contrast_and_bone": (SOFT_TISSUE_HU[1], float("inf")),
}
# Above it is the patient (and the table): training patches are drawn there, and a slice without it has no body.
BODY_THRESHOLD_HU = -500.0

# --- Memory format -----------------------------------------------------------------------------------------------
# train.json, inference.json and the scoring scripts run networks in channels-last (custom.networks.memory_format):
# same weights and results to float rounding; on a 2-core Intel Xeon 1.6x the inference throughput and 0.81x the
# training time of NCHW (with --amp true; model card, "Speed" and "Training"). GPUs not measured.
CHANNELS_LAST = True

# --- Inference --------------------------------------------------------------------------------------------------
# inference.json and the evaluation run average the network over this many flipped views of each slice
# (custom.inference.self_ensemble): the most that keeps whole-slice throughput at 3x RED-CNN's on a CPU (model card).
INFERENCE_SELF_ENSEMBLE = 2
# inference.json's default denoising strength: "auto", each slice's strength from its measured noise
# (custom.inference.denoising_strength): 0 at or below the first HU level, 1 at or above the second. Model files may
# record their own ramp (scripts/calibrate_strength.py); this one was fitted for the shipped model on the L067
# validation block at doses 1, 1/2, 1/4 and 1/8 and serves models trained on the default (quarter-dose) simulation.
INFERENCE_STRENGTH = "auto"
NOISE_STRENGTH_RAMP_HU: tuple[float, float] = (16.25, 27.5)

# --- Datalists --------------------------------------------------------------------------------------------------
DATALIST_NAME = "datalist.json"
SPLITS: tuple[str, ...] = ("training", "validation", "test")
LOW_DOSE_KEY = "low_dose"  # datalist file entries
FULL_DOSE_KEY = "full_dose"
DOSE_FRACTION_KEY = "dose_fraction"  # the simulated dose of a pair, where a datalist records it
PATIENT_KEY = "patient"
IMAGE_KEY = "image"  # MONAI dictionaries: the network input (low dose) and its target (full dose)
LABEL_KEY = "label"
PRED_KEY = "pred"
DEFAULT_TEST_PATIENTS: tuple[str, ...] = ("L506",)

# --- Paths ------------------------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
# A packaged bundle (scripts/package_bundle.py) holds configs/, models/, docs/ and this package side by side, and its
# model-zoo weights file models/model.pt is the shipped model; the repository keeps them under bundle/.
PACKAGED = (REPO_ROOT / "configs" / "metadata.json").is_file() and not (REPO_ROOT / "bundle").is_dir()
BUNDLE_DIR = REPO_ROOT if PACKAGED else REPO_ROOT / "bundle"
CONFIG_DIR = BUNDLE_DIR / "configs"
TRAIN_CONFIG = CONFIG_DIR / "train.json"
INFERENCE_CONFIG = CONFIG_DIR / "inference.json"
META_FILE = CONFIG_DIR / "metadata.json"
MODELS_DIR = BUNDLE_DIR / "models"
MODEL_FILE = MODELS_DIR / "model.pt"  # what training writes
SHIPPED_MODEL_FILE = MODEL_FILE if PACKAGED else MODELS_DIR / "shipped" / "model.pt"  # the pretrained default, in git
EVAL_DIR = BUNDLE_DIR / "eval"
RUNS_DIR = BUNDLE_DIR / "runs"
DEFAULT_DATASET_DIR = BUNDLE_DIR / "data" / "default"  # the cache built from the embedded sources
EMBEDDED_DATA_DIR = BUNDLE_DIR / "data" / "embedded"  # redistributable real CT copied into the project
TRACKING_DB = EVAL_DIR / "mlruns.db"
DEFAULT_TRACKING_URI = f"sqlite:///{TRACKING_DB}"
DEFAULT_EXPERIMENT = "ldct_effnetv2_wgangp"
# The developers' real data beside the repository (absent for users: tools that default to it say so).
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
SHARED_CT_DIR = SHARED_DATA_DIR / "ct"
