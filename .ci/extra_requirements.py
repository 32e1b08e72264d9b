"""``python .ci/extra_requirements.py EXTRA``: the requirements of one of pyproject.toml's extras, one a line
(for ``pip install -r``; the torch-free venv of ``make runtime-venv`` installs the runtime extra's this way,
beside ``pip install --no-deps masra``)."""

import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
print("\n".join(project["optional-dependencies"][sys.argv[1]]))
