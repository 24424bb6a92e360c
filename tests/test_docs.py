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


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blocks write checkpoints
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["samples"].shape == (1000, 2)
    assert namespace["z"].shape == (5, 7, 4)
    assert 0 < namespace["loss"].item() < 6
    assert namespace["draws"].shape == (100, 2) and namespace["test_nll"] < 3.5
    assert namespace["chains"].shape == (16, 500, 2) and namespace["summary"]["r_hat"].max() < 1.1
    assert abs(namespace["rate"].mean().item() - 16 / 5) < 0.4  # Gamma(16, 5) posterior
    assert namespace["fresh"].shape == (256, 1, 2) and len(namespace["history"]["loss"]) == 50
    assert namespace["khat"] < 1.0 and namespace["median"]["x1"].shape == ()
    assert namespace["posterior"].posterior["x2"].shape == (1, 500)
    assert namespace["digits"].shape == (16, 1, 8, 8) and namespace["bpd"].shape == (8,)
    assert (
        len(namespace["vae_losses"]) == 20
        and namespace["vae_losses"][-1] < namespace["vae_losses"][0]
    )
    assert (
        torch.isfinite(namespace["bound"]).all()
        and namespace["fvae_losses"][-1] < namespace["fvae_losses"][0]
    )
    gmm, gmm_svi, points = namespace["gmm"], namespace["gmm_svi"], namespace["points"]
    assert gmm.converged_ and namespace["labels"].shape == (2000,)
    assert abs(gmm_svi.score(points) - gmm.score(points)) < 0.1  # one objective, one start
    assert namespace["plsa"].p_w_given_z_.shape == (4, 30) and namespace["km"].inertia_ > 0
    assert len(namespace["fit_history"]) == 200 and namespace["ema_nll"] != namespace["live_nll"]
    assert namespace["shift_and_scale"].shape == (5, 2) and namespace["squares"].shape == (10,)
    torch.testing.assert_close(
        namespace["w_mean"], torch.tensor([1.0, -2.0, 0.5]), atol=0.05, rtol=0
    )
    assert dict(namespace["w_idata"].posterior.sizes)["chain"] == 16


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
