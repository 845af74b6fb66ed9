"""Benchmark plumbing on tiny budgets: every method, convention and variant is there, and runs compare in MLflow.

The figures themselves are not checked (they need the documented budgets); the structure, the conventions and
the MLflow record are.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import mlflow
import nibabel as nib
import numpy as np
import pytest
from builders import abdomen_phantom, edit, write_ct_series, write_synthetic_datalist
from pydicom.data import get_testdata_file
from tqdm import tqdm

from custom.evaluation import quality_benchmark as benchmark_quality
from custom.evaluation import run_comparison
from custom.evaluation import speed_benchmark as benchmark_speed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ScriptLoader = Callable[[str], ModuleType]


@pytest.fixture(scope="module")
def quality_run(script: ScriptLoader, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    """One --quick quality benchmark over every method; returns its result, output folder and datalist."""
    data_dir = tmp_path_factory.mktemp("paired")
    datalist = write_synthetic_datalist(data_dir)
    output_dir = tmp_path_factory.mktemp("quality")
    arguments = ["--quick", "--datalist", str(datalist), "--output-dir", str(output_dir)]
    result = script("benchmark_quality").main([*arguments, "--set", "red_cnn.iterations=2", "red_cnn.learning_rate=2e-4"])
    return result, output_dir, datalist


def test_every_example_in_the_help_parses(script: ScriptLoader) -> None:
    """The commands `--help` documents are accepted as written (a renamed option or a lost line break shows here)."""
    lines = benchmark_quality.__doc__.splitlines()
    assert max(map(len, lines)) <= 120, "a help line runs on (a single backslash joins two lines of the docstring)"
    commands: list[str] = []
    for line in lines:
        if commands and commands[-1].endswith("\\"):
            commands[-1] = commands[-1][:-1] + line
        elif line.strip().startswith("python scripts/benchmark_quality.py") and "..." not in line:
            commands.append(line.strip())
    assert len(commands) >= 4, commands
    parse_args = script("benchmark_quality").parse_args
    for command in commands:
        words = shlex.split(command)[2:]
        if "--real-low-dose" in words:  # the Mayo series is read when parsed; it is not on every machine
            at = words.index("--real-low-dose")
            del words[at : at + 2]
        parse_args(words)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("red_cnn.learning_rate", "expected METHOD.KEY=VALUE"),
        ("bm3d.iterations=3", "'bm3d' is not a learned method"),
        ("ours.learning_rte=1e-4", "'learning_rte' is not an id of train.json"),
    ],
)
def test_a_bad_method_setting_is_refused_before_training(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        benchmark_quality.parse_method_setting(text)
    assert benchmark_quality.parse_method_setting("ours.n_critic=1") == ("ours", "n_critic", 1)
    assert benchmark_quality.parse_method_setting("ours.perceptual_network=vgg19") == ("ours", "perceptual_network", "vgg19")


def test_a_sweep_is_read_value_by_value_and_checked_before_training() -> None:
    assert benchmark_quality.parse_sweep("ours.n_critic=1,5") == ("ours", "n_critic", [1, 5])
    assert benchmark_quality.parse_sweep("ours.backbone=tf_efficientnetv2_b0,tf_efficientnetv2_s")[2] == [
        "tf_efficientnetv2_b0",
        "tf_efficientnetv2_s",
    ]
    with pytest.raises(ValueError, match="expected METHOD.KEY=V1,V2"):
        benchmark_quality.parse_sweep("ours.lambda_adv=")
    with pytest.raises(ValueError, match="'lambda_ad' is not an id of train.json"):
        benchmark_quality.parse_sweep("ours.lambda_ad=0,1")
    settings: dict[str, dict] = {"ours": {"n_critic": 1}}
    names = benchmark_quality.add_sweep_variants([("ours", "lambda_adv", [0, 0.01])], settings)
    assert names == ["ours[lambda_adv=0]", "ours[lambda_adv=0.01]"]
    # one factor at a time: the variant keeps the centre's --set values
    assert settings["ours[lambda_adv=0.01]"] == {"n_critic": 1, "lambda_adv": 0.01}
    assert benchmark_quality.own_settings("ours[lambda_adv=0]", settings) == {"n_critic": 1, "lambda_adv": 0}


@pytest.mark.slow
def test_sweep_ranks_variants_on_validation(script: ScriptLoader, tmp_path: Path) -> None:
    (tmp_path / "paired").mkdir()
    datalist = write_synthetic_datalist(tmp_path / "paired")
    arguments = ["--quick", "--methods", "ours", "--datalist", str(datalist), "--output-dir", str(tmp_path / "out")]
    result = script("benchmark_quality").main([*arguments, "--sweep", "ours.lambda_adv=0.01"])
    assert list(result["methods"]) == ["ours", "ours[lambda_adv=0.01]", "ldct"]
    sweep = result["sweep"]["ours.lambda_adv"]
    assert sweep["candidates"] == {"ours": 0.001, "ours[lambda_adv=0.01]": 0.01}  # the centre: train.json's value
    validation = {name: result["methods"][name]["runs"][0]["best_validation"] for name in sweep["candidates"]}
    assert all(isinstance(value, float) for value in validation.values()), validation
    assert sweep["chosen"] == max(validation, key=validation.__getitem__)
    client = mlflow.MlflowClient(result["tracking_uri"])
    for name, value in sweep["candidates"].items():
        run = client.get_run(result["methods"][name]["runs"][0]["mlflow_run_id"])
        assert float(run.data.params["lambda_adv"]) == value and run.data.params["method"] == name
    table = (tmp_path / "out" / "quality.md").read_text()
    assert "**Sweep of ours.lambda_adv**" in table and table.count("(chosen)") == 1
    assert (tmp_path / "out" / "runs" / "ours_lambda_adv_0.01_seed0" / "models" / "model.pt").is_file()


@pytest.mark.slow
def test_quality_table_has_every_method_and_convention(quality_run: tuple[dict, Path, Path]) -> None:
    result, output_dir, _ = quality_run
    assert set(result["methods"]) == set(benchmark_quality.ALL_METHODS)
    expected_scores = {f"{metric}_{window}" for metric in ("psnr", "ssim", "rmse") for window in ("w400", "w2000")}
    for method, record in result["methods"].items():
        assert set(record["summary"]) == expected_scores, method
        for run in record["runs"]:
            assert all(len(values) == result["test_slices"] == 3 for values in run["scores"].values()), method
        assert 0 < record["summary"]["ssim_w400"]["mean"] <= 1
    table = (output_dir / "quality.md").read_text()
    assert "[-160, 240] HU, data range 400" in table and "[-1000, 1000] HU, data range 2000" in table
    for method, label in benchmark_quality.LABELS.items():
        # one row per convention, and the learned ones a row in the training-budget table
        assert table.count(f"| {label} |") == 2 + (method in benchmark_quality.LEARNED_METHODS), label
    assert json.loads((output_dir / "quality.json").read_text())["methods"].keys() == result["methods"].keys()
    assert (output_dir / "validation_curves.png").read_bytes().startswith(PNG_MAGIC)
    assert (output_dir / "training_curves.png").read_bytes().startswith(PNG_MAGIC)
    assert "ours_minus_red_cnn_psnr_w400_db" in result["targets"]
    noise = result["soft_tissue_noise_std_hu"]
    assert set(noise) == {"training", "validation", "test"} and all(0 < std < 500 for std in noise.values())
    assert f"test {noise['test']:.1f}" in table


@pytest.mark.slow
def test_classical_strength_is_chosen_on_validation(quality_run: tuple[dict, Path, Path]) -> None:
    result, _, _ = quality_run
    for method, classical in benchmark_quality.CLASSICAL_METHODS.items():
        (run,) = result["methods"][method]["runs"]
        assert run["chosen"] in classical.quick_grid
        assert run["validation_psnr_w400"][str(run["chosen"])] == max(run["validation_psnr_w400"].values())
    # white noise of 30 HU on a flat phantom: every classical denoiser beats the input
    for method in benchmark_quality.CLASSICAL_METHODS:
        assert result["methods"][method]["delta_vs_ldct"]["psnr_w400"]["mean"] > 1.0, method


@pytest.mark.slow
def test_scoring_matches_the_bundles_validation_metrics(quality_run: tuple[dict, Path, Path]) -> None:
    """The benchmark's per-slice PSNR/SSIM of the low-dose input on validation equal what the bundle logged."""
    result, _, datalist = quality_run
    scoring = benchmark_quality.BundleScoring(datalist)
    validation = benchmark_quality.load_paired_datalist(datalist, "validation")
    scores = scoring.score(validation, lambda image: image, "validation ldct")
    client = mlflow.MlflowClient(result["tracking_uri"])
    logged = client.get_run(result["methods"]["ours"]["runs"][0]["mlflow_run_id"]).data.metrics
    assert np.mean(scores["psnr_w400"]) == pytest.approx(logged["ldct_psnr_w400"], abs=1e-3)
    assert np.mean(scores["ssim_w400"]) == pytest.approx(logged["ldct_ssim_w400"], abs=1e-4)


@pytest.mark.slow
def test_every_quality_run_is_in_one_mlflow_experiment(script: ScriptLoader, quality_run: tuple[dict, Path, Path]) -> None:
    result, output_dir, _ = quality_run
    assert result["tracking_uri"] == f"sqlite:///{output_dir / 'mlruns.db'}"
    client = mlflow.MlflowClient(result["tracking_uri"])
    experiment = client.get_experiment_by_name(benchmark_quality.DEFAULT_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert {run.data.params["method"] for run in runs} == set(benchmark_quality.ALL_METHODS)
    for run in runs:
        assert "test_psnr_w400" in run.data.metrics and "test_ssim_w2000" in run.data.metrics
    red_cnn = next(run for run in runs if run.data.params["method"] == "red_cnn")
    assert red_cnn.data.params["lambda_mse"] == "1.0" and red_cnn.data.params["n_critic"] == "0"
    # --set: RED-CNN alone got 2 iterations and its own learning rate; the others kept the shared budget
    assert red_cnn.data.params["learning_rate"] == "0.0002" and result["methods"]["red_cnn"]["runs"][0]["iterations"] == 2
    assert result["methods"]["ours"]["runs"][0]["iterations"] == 1
    assert "iterations 2, learning_rate 0.0002 | 2 |" in (output_dir / "quality.md").read_text()
    assert not list(Path.cwd().glob("mlruns"))  # artifacts stay under the output folder

    summary = script("compare_runs").main(
        [
            "--tracking-uri",
            result["tracking_uri"],
            "--experiment",
            experiment.name,
            "--plot",
            str(output_dir / "curves.png"),
            "--table",
            str(output_dir / "runs.md"),
        ]
    )
    assert "method" in summary["differing_params"]
    assert (output_dir / "curves.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
def test_speed_json_has_every_variant_or_a_reason(script: ScriptLoader, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "speed.json"
    result = script("benchmark_speed").main(["--quick", "--output", str(output), "--markdown", str(tmp_path / "speed.md")])
    printed = json.loads(capsys.readouterr().out)  # stdout carries only the JSON
    assert printed == json.loads(output.read_text())
    assert set(result["models"]) == set(benchmark_speed.QUICK_MODELS)
    for name, record in result["models"].items():
        assert record["gflops_per_slice"] > 0
        assert set(record["variants"]) == set(benchmark_speed.VARIANTS), name
        for variant, outcome in record["variants"].items():
            if outcome["status"] == "ok":
                assert outcome["batch1_latency_ms"] > 0 and outcome["best_batch"] in (1, 2), (name, variant)
                assert outcome["max_abs_diff_hu_vs_eager_fp32"] < 50, (name, variant)  # autocast: bf16 rounding
            else:
                assert outcome["reason"], (name, variant)
        assert record["variants"]["compile"]["status"] == "skipped"  # --quick leaves torch.compile out
    assert record["variants"]["eager_fp32"]["max_abs_diff_hu_vs_eager_fp32"] == 0
    ours = result["speedup_vs_red_cnn"]["ours_tf_efficientnetv2_b0"]
    assert set(ours["per_variant"]) <= set(benchmark_speed.VARIANTS) and ours["best_vs_best"]["ratio"] > 0
    assert [run["channels_last"] for run in result["training"]] == [False, True]
    for training in result["training"]:
        assert training["status"] == "ok" and training["patches_per_s"] > 0 and training["n_critic"] >= 1
    table = (tmp_path / "speed.md").read_text()
    assert all(variant in table for variant in benchmark_speed.VARIANTS) and "| NCHW |" in table


def test_self_ensemble_runs_ours_over_flipped_views_and_red_cnn_alone() -> None:
    """`--self-ensemble 2` times ours as inference.json runs it: twice the work, checked against eager fp32 over the
    same views (a deviation of 0 there), while RED-CNN, the reference, runs alone."""
    settings = replace(benchmark_speed.Settings.for_device("cpu", quick=True), self_ensemble=2)
    with tqdm(disable=True) as progress:
        ours = benchmark_speed.benchmark_model("ours_tf_efficientnetv2_b0", ["eager_fp32", "channels_last"], settings, progress)
        one_pass = benchmark_speed.benchmark_model("ours_tf_efficientnetv2_b0", [], replace(settings, self_ensemble=1), progress)
        red_cnn = benchmark_speed.benchmark_model("red_cnn", [], settings, progress)
    assert (ours["self_ensemble"], one_pass["self_ensemble"], red_cnn["self_ensemble"]) == (2, 1, 1)
    assert ours["gflops_per_slice"] == pytest.approx(2 * one_pass["gflops_per_slice"], abs=0.02)
    assert ours["variants"]["eager_fp32"]["max_abs_diff_hu_vs_eager_fp32"] == 0
    assert ours["variants"]["channels_last"]["max_abs_diff_hu_vs_eager_fp32"] < 1
    assert "ours_tf_efficientnetv2_b0 (2 views) | eager_fp32" in benchmark_speed.markdown_tables(
        {"settings": {"image_size": 64}, "models": {"ours_tf_efficientnetv2_b0": ours}}
    )


def test_training_curves_are_a_running_mean() -> None:
    np.testing.assert_allclose(run_comparison.moving_average([1, 2, 3, 4, 5], 2), [1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(run_comparison.moving_average([1, 2], 10), [1, 2])  # shorter than the window: as is


def test_compile_that_takes_too_long_is_reported_as_skipped() -> None:
    settings = benchmark_speed.Settings.for_device("cpu", quick=True)
    settings = replace(settings, skip_compile_reason="", compile_timeout=0.5)
    outcome = benchmark_speed.measure_compile("red_cnn", settings, reference=None)
    assert outcome == {"status": "skipped", "reason": "torch.compile did not finish within 0.5 s"}


def make_store(uri: str) -> None:
    """Three runs: two differ in lambda_adv and share backbone; validation PSNR/SSIM per epoch; one single value."""
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("compare", artifact_location=Path(uri.removeprefix("sqlite:///")).parent.as_uri())
    for name, lambda_adv, final in (("wgan", "0.001", 30.0), ("l1", "0.0", 29.0)):
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        for param, value in {"backbone": "b0", "lambda_adv": lambda_adv, "epoch_length": "10"}.items():
            client.log_param(run_id, param, value)
        for epoch in (1, 2, 3):
            client.log_metric(run_id, "psnr_w400", final - 3 + epoch, step=epoch)
            client.log_metric(run_id, "ssim_w400", 0.7 + 0.05 * epoch, step=epoch)
            client.log_metric(run_id, "train_loss", 1.0 / epoch, step=epoch)
        client.set_terminated(run_id)
    run_id = client.create_run(experiment_id, run_name="bm3d").info.run_id
    client.log_param(run_id, "backbone", "b0")
    client.log_metric(run_id, "psnr_w400", 28.5)
    client.set_terminated(run_id)


@pytest.mark.slow
def test_compare_runs_table_and_plot(script: ScriptLoader, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    make_store(uri)
    plot = tmp_path / "plots" / "curves.png"
    summary = script("compare_runs").main(
        ["--tracking-uri", uri, "--experiment", "compare", "--plot", str(plot), "--table", str(tmp_path / "runs.md")]
        + ["--json", str(tmp_path / "summary.json")]
    )
    table = capsys.readouterr().out
    assert summary["differing_params"] == ["epoch_length", "lambda_adv"]  # backbone is the same everywhere
    header = table.splitlines()[0]
    assert "lambda_adv" in header and "backbone" not in header and "train_loss" not in header
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:] if line.startswith("|")}
    assert set(rows) == {"wgan", "l1", "bm3d"}
    assert "| 30 |" in rows["wgan"] and "| 28.5 |" in rows["bm3d"]  # final (last) values
    assert summary["curves"] == 5  # 2 runs x 2 metrics, and bm3d's single PSNR as a reference line
    assert plot.read_bytes().startswith(PNG_MAGIC)
    client = mlflow.MlflowClient(uri)
    wgan = next(
        r
        for r in client.search_runs([client.get_experiment_by_name("compare").experiment_id])
        if r.data.tags["mlflow.runName"] == "wgan"
    )
    assert run_comparison.metric_curve(client, wgan, "psnr_w400") == [(10, 28.0), (20, 29.0), (30, 30.0)]
    # training terms are logged per iteration: their steps are not scaled by epoch_length
    assert run_comparison.metric_curve(client, wgan, "train_loss") == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert json.loads((tmp_path / "summary.json").read_text())["runs"][0]["run"] == "wgan"
    assert (tmp_path / "runs.md").read_text().strip() == table.strip()


def test_compare_runs_joins_a_second_store_and_draws_a_resumed_step_once(
    script: ScriptLoader, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A training resumed into another store logs its last epoch again: one value per step, the latest."""
    first, second = f"sqlite:///{tmp_path / 'cpu.db'}", f"sqlite:///{tmp_path / 'gpu.db'}"
    make_store(first)
    client = mlflow.MlflowClient(second)
    experiment_id = client.create_experiment("resumed", artifact_location=tmp_path.as_uri())
    run_id = client.create_run(experiment_id, run_name="wgan").info.run_id
    client.log_param(run_id, "epoch_length", "10")
    for epoch, value, milliseconds in ((1, 25.0, 1000), (2, 26.0, 2000), (2, 27.5, 3000)):  # epoch 2 again, resumed
        client.log_metric(run_id, "psnr_w400", value, timestamp=milliseconds, step=epoch)
    client.set_terminated(run_id)
    summary = script("compare_runs").main(
        ["--tracking-uri", first, "--experiment", "compare", "--also", second, "resumed", "--curves", "psnr_w400"]
        + ["--plot", str(tmp_path / "curves.png"), "--table", str(tmp_path / "runs.md")]
    )
    capsys.readouterr()
    assert [run["run"] for run in summary["runs"]] == ["wgan (compare)", "l1", "bm3d", "wgan (resumed)"]
    assert summary["sources"][1] == {"tracking_uri": second, "experiment": "resumed"}
    assert summary["curves"] == 4  # three runs' curves and bm3d's reference line
    resumed = client.get_run(run_id)
    assert run_comparison.metric_curve(client, resumed, "psnr_w400") == [(10, 25.0), (20, 27.5)]
    with pytest.raises(SystemExit, match="no MLflow store at .*absent.db"):
        script("compare_runs").main(
            ["--tracking-uri", first, "--experiment", "compare", "--also", f"sqlite:///{tmp_path / 'absent.db'}", "x"]
        )


def test_compare_runs_refuses_a_store_that_does_not_exist(script: ScriptLoader, tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    with pytest.raises(SystemExit, match="no MLflow store at .*typo.db"):
        script("compare_runs").main(["--tracking-uri", f"sqlite:///{missing}", "--plot", str(tmp_path / "x.png")])
    assert not missing.exists() and not list(tmp_path.iterdir())


def test_compare_runs_names_a_missing_experiment(script: ScriptLoader, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    make_store(uri)
    with pytest.raises(SystemExit, match="no experiment 'absent'.*compare"):
        script("compare_runs").main(
            [
                "--tracking-uri",
                uri,
                "--experiment",
                "absent",
                "--plot",
                str(tmp_path / "x.png"),
                "--table",
                str(tmp_path / "t.md"),
            ]
        )


def test_default_data_is_simulated_once_and_split_by_series(tmp_path: Path) -> None:
    """Real CT (pydicom's CT_small) in three series folders becomes a paired datalist, one split per series."""
    source = Path(get_testdata_file("CT_small.dcm"))
    data_dir = tmp_path / "ct"
    splits = {"training": ("series_a",), "validation": ("series_b",), "test": ("series_c",)}
    for names in splits.values():
        (data_dir / names[0]).mkdir(parents=True)
        shutil.copy(source, data_dir / names[0] / "slice.dcm")
    output_dir = tmp_path / "out"
    dose_fractions = {"series_a": 0.05}  # series_b and series_c stay at quarter dose
    datalist = benchmark_quality.build_default_datalist(data_dir, output_dir, 0, splits, dose_fractions)
    noise = {}
    for split, (series,) in splits.items():
        (entry,) = benchmark_quality.load_paired_datalist(datalist, split)
        assert entry["patient"] == series
        low, full = (np.asarray(nib.load(entry[key]).dataobj) for key in ("image", "label"))
        assert low.shape == full.shape == (128, 128) and 0 < np.abs(low - full).mean() < 200
        noise[split] = float(np.std(low - full))
    # the same slice at a twentieth of the dose is much noisier than at a quarter: (1 - d) / d is 19 against 3
    assert noise["training"] > 1.8 * noise["test"] and noise["validation"] < 1.3 * noise["test"]
    written = datalist.stat().st_mtime_ns
    assert benchmark_quality.build_default_datalist(data_dir, output_dir, 0, splits, dose_fractions) == datalist
    assert datalist.stat().st_mtime_ns == written  # same sources and settings: reused, not simulated again
    with pytest.raises(FileNotFoundError, match="missing CT series \\['absent'\\]"):
        benchmark_quality.build_default_datalist(data_dir, output_dir, seed=0, series_splits={"test": ("absent",)})


def write_phantom_series(folder: Path, count: int, size: int = 128) -> Path:
    """A CT DICOM series (CT_small's headers, 0.66 mm pixels) of noisy abdomen-like phantoms instead of its pixels."""
    for index, path in enumerate(write_ct_series(folder, [5.0 * index for index in range(count)])):
        stored = np.round(abdomen_phantom(index, size) + 1024).astype(np.int16)  # CT_small: slope 1, intercept -1024
        edit(path, Rows=size, Columns=size, PixelData=stored.tobytes())
    return folder


@pytest.mark.slow
def test_real_low_dose_is_measured_without_reference(script: ScriptLoader, tmp_path: Path) -> None:
    """Classical methods only: every scored method is measured on the real series, LDCT being the identity."""
    series = write_phantom_series(tmp_path / "real_series", count=4)
    datalist = write_synthetic_datalist(tmp_path)
    output_dir = tmp_path / "quality"
    args = ["--quick", "--methods", "bm3d", "tv", "--datalist", str(datalist), "--output-dir", str(output_dir)]
    result = script("benchmark_quality").main([*args, "--real-low-dose", str(series), "--real-low-dose-slices", "3"])
    no_reference = result["no_reference"]
    assert no_reference["series"]["real_series"]["slice_indices"] == [0, 2, 3]
    assert no_reference["series"]["real_series"]["pixel_spacing_mm"] == pytest.approx(0.661468)
    measures = {method: by_series["real_series"] for method, by_series in no_reference["methods"].items()}
    assert set(measures) == {"ldct", "bm3d", "tv"}
    ldct = measures["ldct"]
    assert ldct["noise_ratio"] == 1.0 and ldct["mean_shift_hu"] == 0.0 and ldct["edge_width_ratio"] == 1.0
    assert ldct["mean_shift_within_target"] and ldct["edge_profiles"] >= 20 and 20 < ldct["noise_input_hu"] < 30
    assert ldct["noise_slices"] == 3 and isinstance(ldct["edge_profiles"], int)  # counts stay counts
    for method in ("bm3d", "tv"):
        assert measures[method]["noise_ratio"] < 0.8, method
        assert measures[method]["noise_input_hu"] == ldct["noise_input_hu"], method  # the same input slices
    assert json.loads((output_dir / "quality.json").read_text())["no_reference"] == no_reference
    table = (output_dir / "quality.md").read_text()
    assert "Real low dose, no reference: real_series" in table
    for method in measures:
        assert table.count(f"| {benchmark_quality.LABELS[method]} |") == 3, method  # two conventions and this table
    client = mlflow.MlflowClient(result["tracking_uri"])
    logged = client.get_run(result["methods"]["bm3d"]["runs"][0]["mlflow_run_id"]).data.metrics
    assert logged["real_real_series_noise_ratio"] == pytest.approx(measures["bm3d"]["noise_ratio"])


@pytest.mark.faults
def test_unusable_real_low_dose_fails_before_any_training(
    script: ScriptLoader, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A folder without CT images or a series of unknown pixel spacing is named at argument time."""
    no_images = tmp_path / "notes"
    no_images.mkdir()
    (no_images / "readme.txt").write_text("not a CT image")
    no_spacing = write_phantom_series(tmp_path / "no_spacing", count=2)
    edit(next(no_spacing.iterdir()), PixelSpacing=None)
    bare_nifti = tmp_path / "bare.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.float32), affine=None), bare_nifti)  # no sform, no qform
    output_dir = tmp_path / "quality"
    for path, reason in (
        (no_images, "no DICOM image files"),
        (no_spacing, "no PixelSpacing"),
        (bare_nifti, "pixel spacing is unknown"),
    ):
        with pytest.raises(SystemExit):
            script("benchmark_quality").main(["--quick", "--output-dir", str(output_dir), "--real-low-dose", str(path)])
        error = capsys.readouterr().err
        assert str(path) in error and reason in error, error
    assert not output_dir.exists()  # nothing ran
