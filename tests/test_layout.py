"""The layout shows the architecture: each layer imports only from the layers below it.

Layers, lowest first: the core (``pyro_flowkit/``: transforms, nn, flows, guides, diagnostics,
data, metrics), ``inference/`` (``pyro_flowkit.inference``), ``models/``
(``pyro_flowkit.models``), and the application (``pyro_flowkit/app``). Every module's imports are
read from its source, function-level imports included.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_flowkit._deprecation import MOVED_MODULES

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"pyro_flowkit": "pyro_flowkit", "inference": "pyro_flowkit.inference",
           "models": "pyro_flowkit.models"}  # fmt: skip
LAYERS = ("core", "inference", "models", "app")


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def layer(module: str) -> str:
    if module == "pyro_flowkit.__main__":  # `python -m pyro_flowkit` runs the app
        return "app"
    for name in ("app", "models", "inference"):
        prefix = f"pyro_flowkit.{name}"
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "core"


def imports(path: Path) -> set[str]:
    """The ``pyro_flowkit`` modules ``path`` imports (``from pkg import mod`` as ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {name for name in found if name.split(".")[0] == "pyro_flowkit"}


def test_the_layers_are_what_the_readme_says():
    readme = (ROOT / "README.md").read_text()
    assert "core -> inference -> models -> app" in readme


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_from_a_layer_above_its_own(module):
    if module in MOVED_MODULES:
        pytest.skip("a deprecated alias of a moved module: it imports the new home")
    own = LAYERS.index(layer(module))
    upward = sorted(name for name in imports(MODULES[module]) if LAYERS.index(layer(name)) > own)
    assert not upward, f"{module} ({layer(module)}) imports from a layer above: {upward}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test above could not fail if ``imports`` missed function-level imports."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from pyro_flowkit.models.vae import VAE\n")
    assert "pyro_flowkit.models.vae" in imports(source)
    assert layer("pyro_flowkit.models.vae") == "models" and layer("pyro_flowkit.flows") == "core"


def test_public_surface_lists_the_papers_and_hides_internals():
    import pyro_flowkit as fk

    assert {"models", "inference", "guides", "flows", "transforms"} <= set(dir(fk))
    assert not any(name.startswith("_") and name != "__version__" for name in dir(fk))
    for name in ("nice", "realnvp", "glow", "iresnet", "residual_flow"):
        assert name in fk.flows.__all__ and f"conditional_{name}" in fk.flows.__all__
        assert (ROOT / "pyro_flowkit" / "flows" / f"{name}.py").is_file()  # one module per paper
    for package in (fk.flows, fk.transforms, fk.nn, fk.models, fk.inference, fk.diagnostics):
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.__all__ names a missing {name}"


def _python(
    code: str, cwd: Path, hide_editable_install: bool = True
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in ``cwd``; optionally without the editable install's
    finder, as after a plain ``pip install .`` or with no install at all."""
    if hide_editable_install:
        code = (
            "import sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
            + code
        )
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_subpackages_import_from_the_root_of_a_checkout_without_the_mapping():
    done = _python(
        "import pyro_flowkit.models, pyro_flowkit.inference\n"
        "from pyro_flowkit.models import VAE\n"
        f"assert pyro_flowkit.models.__file__.startswith({str(ROOT / 'models')!r})\n"
        "assert VAE.__module__ == 'pyro_flowkit.models.vae'\n",
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


def test_importing_the_folders_by_their_own_names_is_refused():
    done = _python("import models", cwd=ROOT, hide_editable_install=False)
    assert done.returncode != 0 and "write `import pyro_flowkit.models`" in done.stderr


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_moved_modules_still_import_with_a_deprecation_warning(old):
    import importlib

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*{MOVED_MODULES[old]}"):
        module = importlib.import_module(old)
    new = importlib.import_module(MOVED_MODULES[old])
    for name in module.__all__:  # the very objects of the new home (perhaps renamed)
        assert any(getattr(module, name) is value for value in vars(new).values()), name


def test_renamed_functions_still_work_with_a_deprecation_warning():
    import torch

    import pyro_flowkit as fk

    samples = torch.zeros(2, 5, 1)
    with pytest.warns(DeprecationWarning, match="use pyro_flowkit.diagnostics.from_chains"):
        idata = fk.inference.to_inference_data(samples)
    assert dict(idata.posterior.sizes)["draw"] == 5
    assert fk.guides.to_inference_data.__wrapped__ is fk.diagnostics.from_guide
    assert fk.guides.psis_diagnostic.__wrapped__ is fk.diagnostics.psis_diagnostic
