"""The examples in the README and in the docstrings run and say what they show."""

import doctest
import importlib
import os
import pkgutil
import re
import socket
import subprocess
import sys
from pathlib import Path

import pyro
import pyro.distributions
import pytest
import torch

import pyro_flowkit
import pyro_flowkit.inference
import pyro_flowkit.models
from pyro_flowkit._deprecation import MOVED_MODULES

README = Path(__file__).resolve().parents[1] / "README.md"
# models/ and inference/ live outside pyro_flowkit/ (package-dir mapping), so walk all three;
# the deprecated aliases of moved modules warn on import and hold no examples of their own.
PACKAGES = (pyro_flowkit, pyro_flowkit.inference, pyro_flowkit.models)
MODULES = sorted(
    m.name
    for package in PACKAGES
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    if not m.name.endswith("__main__") and m.name not in MOVED_MODULES
)
# what every docstring example may use without importing it (as in zuko's doctests)
DOCTEST_GLOBALS = {"torch": torch, "pyro": pyro, "dist": pyro.distributions, "nn": torch.nn}


BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _check_block(index: int, ns: dict) -> None:
    """What README block ``index`` shows, run alone as a user would paste it."""
    checks = [
        lambda: ns["samples"].shape == (1000, 2),
        lambda: ns["z"].shape == (5, 7, 4),
        lambda: 0 < ns["loss"].item() < 6,
        lambda: ns["bpd"].shape == (128,) and ns["cold"].shape == (16, 1, 8, 8),
        lambda: ns["draws"].shape == (100, 2) and ns["test_nll"] < 3.5,
        lambda: (
            ns["chains"].shape == (16, 500, 2)
            and ns["summary"]["r_hat"].max() < 1.1
            and abs(ns["rate"].mean().item() - 16 / 5) < 0.4
        ),  # Gamma(16, 5) posterior
        lambda: (
            ns["rate"].shape == (16, 500)
            and abs(ns["rate"].mean().item() - 16 / 5) < 0.2
            and "rate" in ns["idata"].posterior
        ),
        lambda: ns["fresh"].shape == (256, 1, 2) and len(ns["history"]["loss"]) == 50,
        lambda: (
            ns["khat"] < 1.0
            and ns["median"]["x1"].shape == ()
            and ns["posterior"].posterior["x2"].shape == (4, 125)
        ),
        lambda: (
            ns["digits"].shape == (16, 1, 8, 8)
            and ns["bpd"].shape == (8,)
            and len(ns["vae_losses"]) == 20
            and ns["vae_losses"][-1] < ns["vae_losses"][0]
            and torch.isfinite(ns["bound"]).all()
            and ns["fvae_losses"][-1] < ns["fvae_losses"][0]
        ),
        lambda: (
            ns["gmm"].converged_
            and ns["labels"].shape == (2000,)
            and abs(ns["gmm_svi"].score(ns["points"]) - ns["gmm"].score(ns["points"])) < 0.1
            and ns["plsa"].p_w_given_z_.shape == (4, 30)
            and ns["km"].inertia_ > 0
        ),
        lambda: (
            ns["raw_rho"] < 0.85 < ns["white_rho"]
            and ns["flow_rho"] > 0.85
            and ns["pca_rho"] > ns["raw_rho"]
        ),
        lambda: (
            ns["codes"].shape == (8, 4, 4)
            and ns["use"] > 4
            and ns["new_digits"].shape == (16, 1, 8, 8)
            and bool(torch.isfinite(ns["bpd"]).all())
            and ns["prior_losses"][-1] < ns["prior_losses"][0]
            and abs(ns["errors"]["reinforce", None].bias_squared)
            < 4 * ns["errors"]["reinforce", None].bias_squared_se
            and ns["errors"]["gumbel_softmax", 1.0].bias_squared
            > 4 * ns["errors"]["gumbel_softmax", 1.0].bias_squared_se
            and ns["errors"]["gumbel_softmax", 0.1].variance
            > ns["errors"]["gumbel_softmax", 1.0].variance
        ),
        lambda: (
            abs(ns["fitted"] - ns["observed"]) < 0.5
            and len(ns["neighbours"]) == 5
            and "dog" not in ns["neighbours"]
            and ns["history"].metrics["cost"][-1] < ns["history"].metrics["cost"][0] / 5
        ),
        lambda: (
            len(ns["fit_history"]) == 200
            and ns["ema_nll"] != ns["live_nll"]
            and ns["shift_and_scale"].shape == (5, 2)
            and ns["squares"].shape == (10,)
        ),
        lambda: (
            torch.allclose(ns["w_mean"], torch.tensor([1.0, -2.0, 0.5]), atol=0.05)
            and dict(ns["w_idata"].posterior.sizes)["chain"] == 16
        ),
        lambda: (
            abs(ns["primal"] - ns["dual"]) < 1e-8
            and 4.5 < ns["spectral"].estimate < 5.5
            and ns["spectral"].max_grad_norm <= 1.001
            and ns["clipped"].estimate < 0.5
            and len(ns["fit"].history) == 30
            and ns["test_nll"] < 10
        ),
    ]
    assert len(checks) == len(BLOCKS), "every README block needs its check here"
    assert checks[index](), f"README block {index} does not show what it says"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_on_its_own(index, tmp_path, monkeypatch):
    """Each block pasted alone into a fresh session (its own imports, an empty param store)."""
    monkeypatch.chdir(tmp_path)  # blocks may write checkpoints
    pyro.clear_param_store()
    namespace: dict = {"__name__": "__main__"}
    exec(compile(BLOCKS[index], f"README.md, block {index}", "exec"), namespace)
    _check_block(index, namespace)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(
        module,
        extraglobs=DOCTEST_GLOBALS,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.failed == 0


def test_readme_torchrun_example_runs_on_two_processes(tmp_path):
    """The README's data-parallel script, as torchrun starts it: two gloo processes."""
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
        if b.startswith("# train_ddp.py")
    ]
    script = tmp_path / "train_ddp.py"
    script.write_text(block + "\nassert w_idata.posterior.sizes['chain'] == 32, w_idata\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         f"--master_port={port}", str(script)],
        cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
