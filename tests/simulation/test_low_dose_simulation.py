"""The torch parallel-beam projector and the projection-domain low-dose simulation transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from custom.simulation.low_dose import SimulateLowDose, SimulateLowDosed
from custom.simulation.projector import ParallelBeamProjector

SIZE = 96
SPACING_MM = 2.5  # 96 pixels of 2.5 mm: a 20 cm water disc fits, like an abdomen
VIEWS = 96
FAST = {"num_views": VIEWS, "pixel_spacing_mm": SPACING_MM, "incident_flux": 1e5}  # low flux: clear noise


def disc(size: int = SIZE, radius: float = 40.0, inside: float = 0.0, outside: float = -1000.0) -> np.ndarray:
    """HU image of a centred disc (water by default) in air."""
    row, column = np.mgrid[:size, :size] - (size - 1) / 2
    return np.where(row**2 + column**2 < radius**2, inside, outside).astype(np.float32)


def inner_mask(size: int = SIZE, radius: float = 32.0) -> np.ndarray:
    row, column = np.mgrid[:size, :size] - (size - 1) / 2
    return row**2 + column**2 < radius**2


@pytest.mark.parametrize("shape", [(64, 64), (48, 70)])
def test_fbp_of_projection_recovers_the_image(shape: tuple[int, int]) -> None:
    row, column = np.mgrid[: shape[0], : shape[1]] - (np.array(shape)[:, None, None] - 1) / 2
    big_disc_radius = (row - 5) ** 2 + (column + 8) ** 2
    image = (big_disc_radius < 15**2) + 0.5 * ((row + 10) ** 2 + (column - 12) ** 2 < 6**2)
    image = torch.from_numpy(image.astype(np.float32))[None, None]
    projector = ParallelBeamProjector(shape, num_views=120, filter_name="ramp")
    sinogram = projector.forward(image)
    # every view sees all of the image: its line integrals add up to the image's total
    torch.testing.assert_close(sinogram.sum(-1), image.sum().expand(1, 120), rtol=5e-3, atol=0)
    reconstruction = projector.fbp(sinogram)
    assert (reconstruction - image).abs().mean() < 0.03
    assert abs(float(reconstruction[0, 0][big_disc_radius < 10**2].mean()) - 1.0) < 0.01


def test_projector_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="even"):
        ParallelBeamProjector((32, 32), num_views=45)
    with pytest.raises(ValueError, match="filter"):
        ParallelBeamProjector((32, 32), filter_name="butterworth")
    with pytest.raises(ValueError, match="shaped"):
        ParallelBeamProjector((32, 32)).forward(torch.zeros(1, 1, 32, 31))


def inserted_noise(dose_fraction: float, seed: int = 0, image: np.ndarray | None = None) -> np.ndarray:
    full_dose = disc() if image is None else image
    return SimulateLowDose(dose_fraction=dose_fraction, seed=seed, **FAST)(full_dose) - full_dose


def test_noise_falls_as_dose_rises_as_poisson_statistics_predict() -> None:
    stds = {dose: float(inserted_noise(dose)[inner_mask()].std()) for dose in (0.1, 0.25, 0.5, 0.9)}
    assert stds[0.1] > stds[0.25] > stds[0.5] > stds[0.9] > 0
    # quantum noise dominates, so the inserted variance scales as (1 - d) / d: 3 at quarter dose, 1 at half dose
    assert 1.55 < stds[0.25] / stds[0.5] < 1.9
    assert 5 < stds[0.25] < 500  # plausible HU, not a unit slip by orders of magnitude
    np.testing.assert_array_equal(inserted_noise(1.0), 0)


def test_a_call_can_simulate_another_dose_without_changing_the_simulator() -> None:
    simulator = SimulateLowDose(dose_fraction=0.25, seed=0, **FAST)
    mask = inner_mask()
    at_own_dose = float((simulator(disc()) - disc())[mask].std())
    at_half_dose = float((simulator(disc(), dose_fraction=0.5) - disc())[mask].std())
    assert 1.55 < at_own_dose / at_half_dose < 1.9  # as two simulators at 0.25 and 0.5 give (test above)
    assert simulator.simulation_settings["dose_fraction"] == 0.25
    with pytest.raises(ValueError, match="dose_fraction must be in"):
        simulator(disc(), dose_fraction=0.0)


def test_mean_hu_of_water_stays_unbiased() -> None:
    noise = inserted_noise(0.1)
    mask = inner_mask()
    assert abs(float(noise[mask].mean())) < 3.0
    assert float(noise[mask].std()) > 20.0  # the bound above is tight compared with the noise


def test_same_seed_same_image_other_seed_other_image() -> None:
    np.testing.assert_array_equal(inserted_noise(0.25, seed=3), inserted_noise(0.25, seed=3))
    assert not np.allclose(inserted_noise(0.25, seed=3), inserted_noise(0.25, seed=4))
    simulator = SimulateLowDose(seed=7, **FAST)
    assert not np.allclose(simulator(disc()), simulator(disc()))  # each call draws new noise


def test_output_type_shape_and_dtype_follow_the_input() -> None:
    simulator = SimulateLowDose(seed=0, **FAST)
    image = disc()
    for array in (image, image[None], np.stack([image, image])):
        output = simulator(array)
        assert isinstance(output, np.ndarray) and output.shape == array.shape and output.dtype == np.float32
    tensor_output = simulator(torch.from_numpy(image)[None])
    assert type(tensor_output) is torch.Tensor and tensor_output.shape == (1, SIZE, SIZE)
    assert simulator(image.astype(np.int16)).dtype == np.float32  # integers cannot hold the fractional noise
    assert simulator(image.astype(np.float64)).dtype == np.float64
    channels = simulator(np.stack([image, image]))
    assert not np.allclose(channels[0], channels[1])  # each channel gets its own noise


def test_metatensor_spacing_comes_from_the_affine() -> None:
    affine = torch.diag(torch.tensor([SPACING_MM, SPACING_MM, 1.0, 1.0], dtype=torch.float64))
    meta_image = MetaTensor(torch.from_numpy(disc())[None], affine=affine, meta={"filename_or_obj": "disc.nii.gz"})
    from_affine = SimulateLowDose(seed=1, **{**FAST, "pixel_spacing_mm": 99.0})(meta_image)
    from_parameter = SimulateLowDose(seed=1, **FAST)(disc()[None])
    assert isinstance(from_affine, MetaTensor) and from_affine.meta["filename_or_obj"] == "disc.nii.gz"
    np.testing.assert_allclose(from_affine.numpy(), from_parameter, atol=1e-3)
    anisotropic = MetaTensor(torch.zeros(1, 8, 8), affine=torch.diag(torch.tensor([1.0, 2.0, 1.0, 1.0], dtype=torch.float64)))
    with pytest.raises(ValueError, match="square pixels"):
        SimulateLowDose(num_views=VIEWS)(anisotropic)


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        SimulateLowDose(num_views=VIEWS)(disc())
    with pytest.raises(ValueError, match="dose_fraction"):
        SimulateLowDose(dose_fraction=0.0)
    with pytest.raises(ValueError, match="filter"):
        SimulateLowDose(filter_name="unknown")
    with pytest.raises(ValueError, match="incident_flux"):
        SimulateLowDose(incident_flux=-1.0)
    with pytest.raises(ValueError, match="electronic_noise_var"):
        SimulateLowDose(electronic_noise_var=-1.0)
    with pytest.raises(ValueError, match="2D image"):
        SimulateLowDose(**FAST)(np.zeros((1, 1, 8, 8), np.float32))


def test_dictionary_transform_adds_low_dose_and_keeps_full_dose() -> None:
    full_dose = MetaTensor(torch.from_numpy(disc())[None], meta={"filename_or_obj": "full.nii.gz"})
    original = full_dose.clone()
    transform = SimulateLowDosed(keys="full_dose", output_key="low_dose", seed=0, num_views=VIEWS)
    data = transform({"full_dose": full_dose, "patient": "P1"})
    assert data["full_dose"] is full_dose and torch.equal(data["full_dose"], original)
    low_dose = data["low_dose"]
    assert isinstance(low_dose, MetaTensor) and low_dose.meta["filename_or_obj"] == "full.nii.gz"
    assert low_dose.meta is not full_dose.meta and low_dose.shape == full_dose.shape
    assert float((low_dose - full_dose).abs().mean()) > 1.0
    again = SimulateLowDosed(seed=0, num_views=VIEWS)({"full_dose": full_dose})["low_dose"]
    torch.testing.assert_close(again.as_tensor(), low_dose.as_tensor())


def test_noise_level_does_not_depend_on_the_simulated_views() -> None:
    """Photons are pooled over the real scanner's views, so fewer simulated views only run faster."""
    stds = [float(SimulateLowDose(seed=0, **{**FAST, "num_views": views})(disc())[inner_mask()].std()) for views in (48, 192)]
    assert 0.9 < stds[0] / stds[1] < 1.1


def test_noise_level_per_mm_does_not_depend_on_the_pixel_size() -> None:
    """The same 200 mm water disc at 2.5 mm and 1.6 mm pixels gets the same noise in HU (a B30f kernel in
    cycles/mm, detector bins in mm), where a per-pixel flux made the noise follow the pixel size."""
    coarse = inserted_noise(0.25, image=disc(SIZE, radius=40.0))[inner_mask()].std()
    fine_size = 150
    fine_disc = disc(fine_size, radius=40.0 * SPACING_MM / 1.6)
    fine = SimulateLowDose(seed=0, **{**FAST, "pixel_spacing_mm": 1.6})(fine_disc) - fine_disc
    assert 0.85 < float(fine[inner_mask(fine_size, radius=32.0 * SPACING_MM / 1.6)].std()) / float(coarse) < 1.15


def test_command_line_tool_writes_aligned_pairs_and_a_datalist(script, tmp_path) -> None:
    import json

    import nibabel as nib

    simulate_low_dose = script("simulate_low_dose")
    input_dir = tmp_path / "full"
    for patient in ("P1", "P2", "P3"):
        (input_dir / patient).mkdir(parents=True)
        np.save(input_dir / patient / "slice.npy", disc(48, radius=20))
    nib.save(
        nib.Nifti1Image(disc(48, radius=20)[:, :, None], np.diag([SPACING_MM] * 3 + [1.0])), str(input_dir / "P3" / "b.nii.gz")
    )
    (input_dir / "P3" / "notes.txt").write_text("ignored")
    arguments = ["--num-views", "32", "--pixel-spacing-mm", str(SPACING_MM), "--val-fraction", "0.34", "--test-fraction", "0.34"]

    output_dir = tmp_path / "simulated"
    assert simulate_low_dose.main([str(input_dir), str(output_dir), *arguments]) == 0
    datalist = json.loads((output_dir / "datalist.json").read_text())
    assert sorted(len(entries) for entries in datalist.values()) == [1, 1, 2]
    assert len({entry["patient"] for entries in datalist.values() for entry in entries}) == 3
    for entry in (entry for entries in datalist.values() for entry in entries):
        low, full = (nib.load(entry[key]) for key in ("low_dose", "full_dose"))
        assert low.shape == full.shape == (48, 48) and low.get_data_dtype() == np.float32
        np.testing.assert_allclose(full.get_fdata(), disc(48, radius=20))
        assert 1 < np.abs(low.get_fdata() - full.get_fdata()).mean() < 500
    with pytest.raises(SystemExit, match="input folder"):
        simulate_low_dose.main([str(input_dir), str(input_dir / "P1" / "out"), *arguments])
    with pytest.raises(SystemExit, match="pixel-spacing-mm"):
        simulate_low_dose.main([str(input_dir), str(tmp_path / "other"), "--num-views", "32"])
    np.save(input_dir / "P3" / "z_air.npy", np.full((48, 48), -1000.0, np.float32))  # read after the good slices
    with pytest.raises(SystemExit, match="z_air.npy: no body in the slice"):
        simulate_low_dose.main([str(input_dir), str(tmp_path / "air"), *arguments])
    assert not (tmp_path / "air").exists()  # checked before any output
