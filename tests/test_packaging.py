"""The installed layout: one namespace, with models/ and inference/ mapped into it."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_models_and_inference_import_under_the_package():
    import pyro_flowkit as fk

    assert fk.models.__name__ == "pyro_flowkit.models"
    assert fk.inference.__name__ == "pyro_flowkit.inference"
    assert Path(fk.inference.__file__).parent.name == "inference"
