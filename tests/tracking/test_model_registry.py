"""The MLflow run of a training records its commit, its datalist and the model it made, reusable as a pyfunc model."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import torch
from builders import perturbed_tiny_generator
from ignite.engine import Engine
from monai.handlers import MLFlowHandler

from custom.networks.model_file import save_model_file
from custom.tracking.mlflow_logging import enrich_mlflow_handlers
from custom.tracking.model_registry import GIT_COMMIT_TAG, GIT_DIRTY_TAG, MODEL_NAME, RunRecords, file_digest


def test_training_run_records_lineage_and_a_registered_hu_model(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    handler = MLFlowHandler(tracking_uri=store, experiment_name="ldct_test", close_on_complete=True)
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"low_dose": "a.nii.gz", "full_dose": "b.nii.gz"}]}))
    generator = perturbed_tiny_generator()
    model_file = save_model_file(tmp_path / "model.pt", generator)

    engine = Engine(lambda engine, batch: None)
    handler.attach(engine)  # as MONAI attaches it: its COMPLETED handler closes the run before ours runs
    enrich_mlflow_handlers([handler], {"seed": 0})
    RunRecords([handler], str(datalist), str(model_file), register_model="ldct_denoiser").attach(engine)
    engine.run([0], max_epochs=1)

    client = mlflow.MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("ldct_test").experiment_id])
    assert run.info.status == "FINISHED"
    assert len(run.data.tags[GIT_COMMIT_TAG]) == 40 and run.data.tags[GIT_DIRTY_TAG] in ("true", "false")
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == file_digest(datalist)[:32]
    assert json.loads(dataset_input.dataset.source)["uri"] == str(datalist)
    (version,) = client.search_model_versions("name = 'ldct_denoiser'")
    assert version.run_id == run.info.run_id

    assert version.source == f"{run.info.artifact_uri}/{MODEL_NAME}"
    model = mlflow.pyfunc.load_model(version.source)
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 1, -1, -1)
    hu = np.random.default_rng(0).uniform(-1000.0, 400.0, (1, 1, 70, 45)).astype(np.float32)
    hu[0, 0, 0, :5] = -3000.0  # outside the model's window: passed through
    denoised = model.predict(hu)
    with torch.no_grad():
        expected = generator(torch.from_numpy((hu + 1024.0) / 4096.0).clamp(0, 1)).numpy() * 4096.0 - 1024.0
    np.testing.assert_allclose(denoised[0, 0, 1:], expected[0, 0, 1:], atol=1e-2)
    np.testing.assert_array_equal(denoised[0, 0, 0, :5], hu[0, 0, 0, :5])
    assert np.abs(denoised - hu).max() > 1.0  # the perturbed generator changes the image
