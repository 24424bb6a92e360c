import json
import math

import pytest

from pyro_flowkit.cli import main


@pytest.mark.parametrize(
    "model, dataset",
    [("realnvp", "moons"), ("nice", "digits"), ("glow", "digits"), ("iresnet", "rings")],
)
def test_fit_command_writes_checkpoint_metrics_and_picture(tmp_path, model, dataset, capsys):
    assert (
        main(
            [
                "fit",
                model,
                "--data",
                dataset,
                "--steps",
                "20",
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 0
    )
    stem = f"{model}_{dataset}"
    metrics = json.loads((tmp_path / f"{stem}.json").read_text())
    key = "test_bits_per_dim" if dataset == "digits" else "test_nll"
    assert metrics["steps"] == 20 and metrics[key] == metrics[key]  # finite, not NaN
    assert (tmp_path / f"{stem}.pt").stat().st_size > 0
    assert (tmp_path / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert key in capsys.readouterr().out


def test_bad_choices_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "maf"])
    assert "invalid choice: 'maf'" in capsys.readouterr().err


def test_quick_demo(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    for model in ("nice", "realnvp", "glow"):
        assert (
            report["digits"][model]["test_bits_per_dim"] < report["digits"]["uniform_bits_per_dim"]
        )
    assert report["toy_iresnet"]["test_nll"] < 3.3  # below a Gaussian fit of the moons (3.38)
    for name in ("metrics.json", "density_moons.png", "digits_samples.png", "glow_samples.png"):
        assert (tmp_path / name).exists()
    assert (tmp_path / "density_iresnet_moons.png").exists()
    ebm = report["ebm_8gaussians"]
    assert ebm["mmd_samples"] < ebm["mmd_noise"] and ebm["energy_data"] < ebm["energy_noise"]
    mala = report["mala_logistic_regression"]
    assert mala["divergences"] == 0 and mala["test_accuracy"] > 0.9
    gmm = report["gmm_pinwheel"]
    assert gmm["em_iterations"] < 500 and gmm["em_test_log_likelihood"] > -3.0
    assert gmm["svi_test_log_likelihood"] > -3.5
    vaes = report["vae_digits"]
    assert all(math.isfinite(r["test_bits_per_dim"]) for r in vaes.values())
    assert vaes["fvae"]["test_bits_per_dim"] < report["digits"]["uniform_bits_per_dim"]
    for name in ("ebm_8gaussians.png", "mala_trace.png", "gmm_pinwheel.png", "vae_samples.png"):
        assert (tmp_path / name).exists()


def test_glow_is_refused_on_2d_data():
    with pytest.raises(ValueError, match="glow models images"):
        main(["fit", "glow", "--data", "moons", "--steps", "1", "--no-progress"])
