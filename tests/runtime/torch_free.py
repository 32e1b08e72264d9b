"""The runtime with torch unimportable (in the torch-free venv too: tests/runtime/conftest.runtime_python).

``python tests/runtime/torch_free.py EXPORT PAIRS.npz``: the runtime's answers on features, with every other
package of masra's core install but NumPy unimportable too (so the runtime needs NumPy and onnxruntime only).
PAIRS.npz holds ``video_<i>`` / ``query_<i>`` raw features and ``durations``; prints one JSON line:
``{"predictions": [{"windows": ..., "saliency": ...}, ...]}`` (the pairs one by one,
all of them in one batch, then each pair over its whole video with sliding windows).

``python tests/runtime/torch_free.py masra ARGS...``: the ``masra`` command (e.g. ``predict --video V --query Q
--runtime onnx``, ``predict --split val --runtime onnx``) with torch and the training stack unimportable (the
runtime extra's tqdm and PyYAML allowed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for core_only's import blocker

from core_only import Refuse  # noqa: E402

# masra's core dependencies (pyproject.toml) that the runtime must do without: importing one raises
# ModuleNotFoundError, and the script fails.
NOT_IN_THE_RUNTIME = ("torch", "scipy", "yaml", "safetensors", "tqdm", "rich")
# What `masra predict --runtime onnx` (on video or feature files) must do without: the training stack and the
# torch-side encoder (PyYAML is the runtime extra's, for --set values).
NOT_IN_THE_COMMAND = ("torch", "scipy", "safetensors", "rich", "transformers", "torchvision")


def masra(args: list[str]) -> int:
    sys.meta_path.insert(0, Refuse(NOT_IN_THE_COMMAND))
    from masra.cli.main import main as masra_main

    return masra_main(args)


def main(export: str, pairs_file: str) -> None:
    sys.meta_path.insert(0, Refuse(NOT_IN_THE_RUNTIME))
    import numpy as np

    from masra.runtime import OnnxGrounder

    pairs = np.load(pairs_file)
    count = len(pairs["durations"])
    videos = [pairs[f"video_{i}"] for i in range(count)]
    queries = [pairs[f"query_{i}"] for i in range(count)]
    durations = pairs["durations"].tolist()
    grounder = OnnxGrounder.from_export(export, threads=1)
    single = [grounder.predict(v, q, duration=d) for v, q, d in zip(videos, queries, durations)]
    batched = grounder.predict_batch(videos, queries, durations)
    whole = [grounder.predict_video_features(v, q) for v, q in zip(videos, queries)]
    print(json.dumps({
        "predictions": [{"windows": p.windows, "saliency": p.saliency.tolist()} for p in single + batched + whole],
    }))


if __name__ == "__main__":
    if sys.argv[1:2] == ["masra"]:
        sys.exit(masra(sys.argv[2:]))
    main(*sys.argv[1:])
