import json
import math

import pytest

from pyro_flowkit.app.cli import main


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
    assert len(report["glove"]["neighbours"]) > 0 and (tmp_path / "glove.pt").exists()
    wgan = report["wgan_8gaussians"]  # the WGAN-trained flow: worse likelihood, farther samples
    assert wgan["ml"]["test_nll"] < wgan["wgan"]["test_nll"]
    assert wgan["data"]["mmd"] < wgan["wgan"]["mmd"]
    assert (tmp_path / "wgan_8gaussians.png").exists()


def _usage_error(argv, capsys):
    """Run ``main(argv)``, expecting argparse's exit: status 2, one error line, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert lines[0].startswith("usage: flowkit") and lines[-1].startswith("flowkit: error: ")
    return lines[-1]


def test_glow_is_refused_on_2d_data(capsys):
    error = _usage_error(
        ["fit", "glow", "--data", "moons", "--steps", "1", "--no-progress"], capsys
    )
    assert "glow models images" in error and "'moons'" in error


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--steps", "-5", "argument --steps: expected a non-negative integer, got -5"),
        ("--batch-size", "0", "argument --batch-size: expected a positive integer, got 0"),
        ("--batch-size", "-3", "argument --batch-size: expected a positive integer, got -3"),
        ("--lr", "-1", "argument --lr: expected a positive finite number, got -1.0"),
        ("--lr", "0", "argument --lr: expected a positive finite number, got 0.0"),
        ("--lr", "nan", "argument --lr: expected a positive finite number, got nan"),
        ("--lr", "inf", "argument --lr: expected a positive finite number, got inf"),
        ("--seed", "-1", "argument --seed: expected a non-negative integer, got -1"),
        ("--seed", str(2**32), "argument --seed: expected a seed in [0, 4.29497e+09]"),
        ("--steps", "ten", "argument --steps: invalid int value: 'ten'"),
        ("--lr", "fast", "argument --lr: invalid float value: 'fast'"),
    ],
)
def test_bad_values_exit_with_a_usage_error(option, value, expected, capsys):
    argv = ["fit", "realnvp", "--data", "moons", option, value, "--no-progress"]
    assert _usage_error(argv, capsys).startswith(f"flowkit: error: {expected}")


def test_an_output_path_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    for argv in (["fit", "realnvp", "--data", "moons"], ["demo", "--quick"]):
        error = _usage_error([*argv, "--out", str(taken), "--no-progress"], capsys)
        assert error.startswith("flowkit: error: argument --out: expected a directory")


def test_bad_choices_are_usage_errors_too(capsys):
    assert "invalid choice: 'maf'" in _usage_error(["fit", "maf"], capsys)
