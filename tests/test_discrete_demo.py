"""The demo's discrete-latent step (slow: about 10 s; `flowkit demo --quick` runs it once the
demo calls it)."""

import math

import pytest

from pyro_flowkit.app.discrete_demo import demo_step


@pytest.mark.slow
def test_the_quick_step_writes_its_picture_and_table(tmp_path):
    report = demo_step(tmp_path, quick=True)
    vq = report["vqvae_digits"]
    assert math.isfinite(vq["test_mse"]) and math.isfinite(vq["test_bits_per_dim"])
    assert 1 <= vq["test_perplexity"] <= 16 and vq["bits_per_image"] == 64
    rows = report["gradient_estimators"]
    assert [r["estimator"] for r in rows][:2] == ["reinforce", "gumbel_softmax"]
    assert (tmp_path / "estimators.md").read_text().count("\n") == len(rows) + 2
    pytest.importorskip("matplotlib")
    assert (tmp_path / "vqvae_digits.png").exists()
