"""The evaluator loads without torch (and without the config machinery): scoring a submission file is cheap."""

from __future__ import annotations

import subprocess
import sys


def test_the_evaluator_imports_no_torch_and_no_config():
    code = ("import sys, masra.eval; "
            "print(sorted(m for m in ('torch', 'yaml', 'masra.config', 'masra.model') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
