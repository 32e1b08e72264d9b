"""masra.extras against pyproject.toml: the modules each extra is checked for are what that extra installs, the
core installs none of them, and a missing one reads as one line naming the extra."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

from masra.errors import MasraError
from masra.extras import CORE_MODULES, EXTRA_MODULES, install_hint, missing_modules, require_extra

PROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> tuple[str, list[str]]:
    """(distribution name, extras asked for) of a requirement string like ``masra[video,web]`` or ``av>=11``."""
    match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", requirement)
    assert match, requirement
    return normalize(match[1]), [e.strip() for e in (match[2] or "").split(",") if e.strip()]


def distributions(extra: str) -> set[str]:
    """Every distribution that ``pip install 'masra[extra]'`` asks for by name (masra's own extras expanded)."""
    found: set[str] = set()
    for requirement in EXTRAS[extra]:
        name, nested = requirement_name(requirement)
        if name == "masra":
            for inner in nested:
                found |= distributions(inner)
        else:
            found.add(name)
    return found


def test_every_extra_but_dev_has_its_modules_listed():
    assert set(EXTRA_MODULES) == set(EXTRAS) - {"dev"}


@pytest.mark.parametrize("extra", sorted(EXTRA_MODULES))
def test_each_checked_module_comes_with_its_extra(extra):
    owners = importlib.metadata.packages_distributions()
    for module in EXTRA_MODULES[extra]:
        assert module in owners, f"{module} is not installed (the dev extra brings every extra)"
        assert {normalize(owner) for owner in owners[module]} & distributions(extra), (extra, module)


def test_the_core_asks_for_no_optional_distribution():
    core = {requirement_name(requirement)[0] for requirement in PROJECT["dependencies"]}
    optional = set().union(*(distributions(extra) for extra in EXTRA_MODULES if extra != "runtime"))
    assert core == {"numpy", "scipy", "pyyaml", "torch", "safetensors", "tqdm", "rich"}
    assert not core & optional


def test_the_runtime_extra_is_a_whole_install_without_torch():
    """Installed beside `pip install --no-deps masra` (the torch-free venv of make test): it repeats the core
    packages it needs, and none of the training stack."""
    core = {requirement_name(requirement)[0] for requirement in PROJECT["dependencies"]}
    owners = importlib.metadata.packages_distributions()
    repeated = {normalize(owner) for module in CORE_MODULES for owner in owners[module]}
    assert core & distributions("runtime") == repeated  # what the core install check leaves out
    assert not {"torch", "transformers", "scipy", "safetensors"} & distributions("runtime")


def test_dev_brings_every_extra():
    assert set().union(*(distributions(extra) for extra in EXTRA_MODULES)) <= distributions("dev")


def test_a_missing_module_is_one_line_naming_the_extra():
    with pytest.raises(MasraError) as err:
        require_extra("plots", "masra predict --plots", modules=("numpy", "no_such_module_for_masra"))
    assert str(err.value) == ("masra predict --plots needs the plots extra (missing: no_such_module_for_masra): "
                              f"{install_hint('plots')}")
    assert missing_modules("plots", ("numpy",)) == []
    require_extra("plots", "anything", modules=("numpy",))  # present: no error
