"""Train and predict on tiny feature files with an installed masra and none of its extras (.ci/wheel_check.sh
runs this with the fresh virtual environment's python, outside the checkout's src/)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import masra
from masra.config import save_config
from masra.extras import CORE_MODULES, EXTRA_MODULES, missing_modules

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))
from tiny_data import make_tiny_dataset, tiny_config  # noqa: E402  (the training tests' tiny dataset)


def masra_command(*args: object) -> subprocess.CompletedProcess:
    """The installed ``masra`` script; a non-zero exit stops the check with its output."""
    result = subprocess.run([str(Path(sys.executable).with_name("masra")), *map(str, args)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"masra {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def main() -> None:
    if "site-packages" not in masra.__file__:
        sys.exit(f"masra comes from {masra.__file__}, not from the installed wheel")
    installed = {extra: sorted(set(modules) - set(missing_modules(extra)) - set(CORE_MODULES))
                 for extra, modules in EXTRA_MODULES.items()}
    if any(installed.values()):
        sys.exit(f"the core install brought optional packages: { {k: v for k, v in installed.items() if v} }")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        paths = make_tiny_dataset(root / "data")
        save_config(tiny_config(paths, root / "unused"), root / "tiny.yaml")
        trained = masra_command("train", "--config", root / "tiny.yaml", "--output-dir", root / "run", "--no-progress")
        if trained.stderr.count("TensorBoard logging is off") != 1:
            sys.exit(f"training did not say once that TensorBoard logging is off:\n{trained.stderr}")
        masra_command("predict", "--checkpoint", root / "run" / "best", "--split", "test", "--out",
                      root / "preds.jsonl", "--device", "cpu")
        rows = [json.loads(line) for line in (root / "preds.jsonl").read_text().splitlines()]
        if len(rows) != 4 or not all(row["pred_relevant_windows"] for row in rows):
            sys.exit(f"unexpected predictions: {rows}")
    print(f"core install: masra {masra.__version__} trained and predicted without any extra")


if __name__ == "__main__":
    main()
