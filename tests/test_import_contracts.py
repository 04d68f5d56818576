"""The layer contracts of pyproject.toml hold: core < widgets < app, core without Qt, ops
without graphs or files, and no import cycle between sibling packages (import-linter).
And the wheel holds every package of the tree."""

from pathlib import Path

from importlinter.cli import lint_imports
from setuptools.config.pyprojecttoml import read_configuration

import core

ROOT = Path(__file__).resolve().parent.parent


def test_the_code_checked_is_this_checkout():
    """The contracts read the packages of this tree, not an installed copy elsewhere."""
    assert Path(core.__file__).resolve().parent == ROOT / "core"


def test_import_contracts_are_kept():
    """lint-imports with the project's contracts reports every contract kept."""
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_every_package_of_the_tree_is_packaged():
    """The wheel's package list (found, not written by hand) has every folder with an
    ``__init__.py`` under app, core, widgets, examples and resources, and nothing else."""
    settings = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]
    tree = {".".join(init.parent.relative_to(ROOT).parts)
            for top in ("app", "core", "widgets", "examples", "resources")
            for init in (ROOT / top).rglob("__init__.py")}
    assert set(settings["packages"]) == tree
    assert settings["package-data"]["examples"] == ["*.json"]
    assert "*.npz" in settings["package-data"]["resources"]
