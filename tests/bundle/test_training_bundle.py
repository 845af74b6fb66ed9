"""The training bundle through its real entry points: `python -m monai.bundle` (with kills and resumes) and torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from builders import wait_while_running
from mlflow.entities import Run
from monai.bundle import ConfigParser

from custom.conventions import SHIPPED_MODEL_FILE
from custom.networks.generator import EfficientNetV2Denoiser
from custom.networks.model_file import build_generator, load_weights, read_model_file

TINY = {
    "backbone": "tf_efficientnetv2_b0",
    "batch_size": 2,
    "patch_size": 32,
    "max_epochs": 1,
    "perceptual_pretrained": False,
    "num_workers": 0,
}


def bundle_command(repo_root: Path, *config_files: str, overrides: dict) -> list[str]:
    configs = [str(repo_root / "bundle" / "configs" / name) for name in config_files]
    config_arg = configs[0] if len(configs) == 1 else "[" + ",".join(f"'{c}'" for c in configs) + "]"
    args = [
        "run",
        "training",
        "--meta_file",
        str(repo_root / "bundle/configs/metadata.json"),
        "--config_file",
        config_arg,
        "--logging_file",
        str(repo_root / "bundle/configs/logging.conf"),
    ]
    for key, value in overrides.items():
        args += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return args


def run_checked(command: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(command)}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
    return result


def checkpoint_weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    content = torch.load(path, map_location="cpu", weights_only=True)
    return {name: content[name] for name in ("generator", "generator_ema", "critic")}


def training_command(repo_root: Path, bundle_root: Path, default_datalist: str) -> list[str]:
    """The smoke command with MLflow tracking and the recipe's defaults (n_critic 5, warm-up, late patches) but no
    perceptual term (as the README's first command), 6 tiny iterations, no --datalist: the default dataset is found in `bundle_root/data/default` (the module's
    build, linked there, so that it is not built again)."""
    (bundle_root / "data").mkdir(parents=True)
    (bundle_root / "data" / "default").symlink_to(Path(default_datalist).parent)
    overrides = {**TINY, "epoch_length": 2, "max_epochs": 3, "val_interval": 3, "late_patch_size": 64, "lambda_perceptual": 0}
    overrides["whole_slice_fraction"] = 0.34  # the last epoch (iterations 5-6) on whole slices, after checkpoint 4
    overrides["system_metrics_interval"] = 0.5
    overrides["bundle_root"] = bundle_root
    command = [sys.executable, "-m", "monai.bundle", *bundle_command(repo_root, "train.json", overrides=overrides)]
    command[4:4] = ["--tracking", "mlflow"]
    return command


def the_run(bundle_root: Path) -> tuple[mlflow.MlflowClient, Run]:
    client = mlflow.MlflowClient(f"sqlite:///{bundle_root / 'eval' / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ldct_effnetv2_wgangp").experiment_id])
    return client, run


@pytest.mark.slow
@pytest.mark.faults
def test_training_records_its_run_and_a_killed_training_resumes_exactly(
    repo_root: Path, tmp_path: Path, default_datalist: str
) -> None:
    """The smoke command leaves a model file, checkpoints and a complete MLflow run; the same training killed with
    SIGKILL after its first checkpoint and resumed with `--resume_from latest` exits 0 in the same MLflow run with
    bitwise the weights of the uninterrupted run (random states, EMA, optimisers, scalers, schedules restored)."""
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    run_checked(training_command(repo_root, straight, default_datalist), cwd=repo_root)

    model = read_model_file(straight / "models" / "model.pt")  # the EMA generator with its network record
    assert model.settings["backbone"] == TINY["backbone"]
    load_weights(build_generator(model), model)
    checkpoints = sorted(path.name for path in (straight / "models" / "checkpoints").glob("*.pt"))
    assert checkpoints == ["checkpoint_4.pt", "checkpoint_6.pt"]
    client, run = the_run(straight)
    for metric in ("psnr_w400", "ssim_w400", "rmse_w400", "psnr_w2000", "ssim_w2000", "ldct_psnr_w400"):
        assert metric in run.data.metrics, metric
    # 6 iterations of batch 2 on 32-pixel patches move the shipped model's batch-norm statistics far from its own:
    # this checks the record, not the quality
    assert -1 <= run.data.metrics["ssim_w400"] <= 1
    assert "denoiser" in [artifact.path for artifact in client.list_artifacts(run.info.run_id)]  # the MLflow model
    assert run.data.tags["mlflow.source.git.commit"] and run.inputs.dataset_inputs  # lineage: code and data
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)
    warmup = int(run.data.params["adversarial_warmup"])  # default: the first 20 % of the iterations
    assert warmup == int(run.data.params["total_iterations"]) // 5 == 1
    for term, first_step in {
        "train_loss": 1,
        "train_loss_l1": 1,
        "train_loss_adv": warmup + 1,
        "train_gradient_penalty": warmup + 1,
        "train_wasserstein_distance": warmup + 1,
    }.items():
        history = client.get_metric_history(run.info.run_id, term)
        assert len(history) >= 1 and history[0].step == first_step, term
    for param, value in {"lambda_gp": "10.0", "lambda_l1": "1.0", "lambda_perceptual": "0", "n_critic": "5"}.items():
        assert run.data.params[param] == value, param

    command = training_command(repo_root, interrupted, default_datalist)
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    process = subprocess.Popen(command, cwd=repo_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_checkpoint = interrupted / "models" / "checkpoints" / "checkpoint_2.pt"
    wait_while_running(process, first_checkpoint.exists, "the first checkpoint", 600.0)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the training ended before it could be killed"
    client, killed_run = the_run(interrupted)
    assert killed_run.info.status == "RUNNING"  # as a kill leaves it

    run_checked([*command, "--resume_from", "latest"], cwd=repo_root)

    client, resumed_run = the_run(interrupted)  # continued, not a second run
    assert resumed_run.info.run_id == killed_run.info.run_id and resumed_run.info.status == "FINISHED"
    assert {metric.step for metric in client.get_metric_history(resumed_run.info.run_id, "train_loss")} == set(range(1, 7))
    final = checkpoint_weights(interrupted / "models" / "checkpoints" / "checkpoint_6.pt")
    expected = checkpoint_weights(straight / "models" / "checkpoints" / "checkpoint_6.pt")
    for network, weights in expected.items():
        for name, value in weights.items():
            assert torch.equal(final[network][name], value), f"{network}.{name}"
    assert sorted(path.name for path in (interrupted / "models" / "checkpoints").glob("*.pt")) == checkpoints


@pytest.mark.slow
def test_multi_gpu_config_runs_ddp_with_gloo_on_two_cpu_processes(repo_root: Path, tmp_path: Path, default_datalist: str) -> None:
    overrides = {**TINY, "datalist": default_datalist, "bundle_root": tmp_path, "epoch_length": 2, "n_critic": 2}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "monai.bundle",
        *bundle_command(repo_root, "train.json", "multi_gpu_train.json", overrides=overrides),
    ]
    result = run_checked(command, cwd=repo_root)
    model = read_model_file(tmp_path / "models" / "model.pt")  # saved unwrapped from DDP
    load_weights(EfficientNetV2Denoiser(TINY["backbone"]), model)
    assert (tmp_path / "models" / "checkpoints" / "checkpoint_2.pt").is_file()
    assert "Got new best metric of psnr_w400" in result.stdout + result.stderr


def test_config_exposes_the_documented_override_ids(repo_root: Path) -> None:
    import json

    config = json.loads((repo_root / "bundle/configs/train.json").read_text())
    documented = [
        "dataset_dir",
        "datalist",
        "backbone",
        "pretrained",
        "batch_size",
        "patch_size",
        "max_epochs",
        "learning_rate",
        "n_critic",
        "lambda_gp",
        "lambda_adv",
        "lambda_l1",
        "lambda_perceptual",
        "perceptual_pretrained",
        "val_interval",
        "amp",
        "seed",
        "device",
    ]
    assert [name for name in documented if name not in config] == []
    assert config["lambda_gp"] == 10.0 and config["lambda_l1"] == 1.0 and config["lambda_perceptual"] == 0.1
    assert config["learning_rate"] == 1e-05 and config["batch_size"] == 128 and config["patch_size"] == 64
    assert config["from_scratch"] is False and config["pretrained"] is False
    parser = ConfigParser(config)
    parser["bundle_root"] = str(repo_root / "bundle")
    assert parser.get_parsed_content("backbone") == read_model_file(SHIPPED_MODEL_FILE).settings["backbone"]
    assert parser.get_parsed_content("freeze_batch_norm") is True  # fine-tuning keeps the file's BatchNorm statistics
    parser["from_scratch"] = True
    assert parser.get_parsed_content("backbone") == "efficientnetv2_m"  # the paper's, when not starting from the file
    assert parser.get_parsed_content("freeze_batch_norm") is False
    for run_id in ("initialize", "run", "training", "finalize"):
        assert run_id in config


def test_the_critic_scores_late_patch_sized_crops_by_default_and_whole_images_with_size_0(repo_root: Path) -> None:
    import json

    config = json.loads((repo_root / "bundle/configs/train.json").read_text())
    parser = ConfigParser(config)
    crops = parser.get_parsed_content("critic_crops")  # the whole-slice phase: as many pixels as a batch of 64² patches
    assert (crops.size, crops.count) == (128, 128 * 64**2 // 128**2)
    assert crops.body_threshold == parser.get_parsed_content("body_threshold") > 0
    assert parser.get_parsed_content("adversarial_end") is None
    parser = ConfigParser(config)
    parser["critic_crop_size"] = 0
    assert parser.get_parsed_content("critic_crops") is None
