"""Adding a MASRA part takes its own file and one line in the registry (masra.model.parts.PARTS)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from masra.config import MASRA_PARTS, Config
from masra.model.parts import PARTS

TESTS = Path(__file__).resolve().parent

TOY_PART = '''
"""A toy sixth part: scales the clip memory by a learned scalar; its loss is the mean clip-memory norm."""
from dataclasses import dataclass

import torch
from torch import nn

from masra.model.parts.base import Part, PartModule


@dataclass
class ToyConfig:
    enabled: bool = False
    scale_init: float = 1.5


@dataclass
class ToyLossConfig:
    toy: float = 0.5


class MemoryScale(PartModule):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def enhance(self, memory, video_mask, stats):
        return memory * self.scale, {"toy_norm": (memory * self.scale).norm(dim=-1)}

    def diagnostics(self):
        return {"toy_scale": self.scale}


def loss(outputs, batch, loss_cfg):
    mask = outputs["video_mask"]
    return {"loss_toy": (outputs["toy_norm"] * mask).sum() / mask.sum()}


PART = Part(name="toy", config=ToyConfig, build=lambda cfg, ctx: MemoryScale(cfg.scale_init), loss=loss,
            loss_config=ToyLossConfig, weights={"loss_toy": "toy"})
'''

SCRIPT = '''
import sys
sys.path[:0] = [{tmp!r}, {tests!r}]
import masra.model.parts as parts
import toy_part
parts.PARTS = parts.PARTS + (toy_part.PART,)  # the one registration line

import torch
from masra.config import MASRA_PARTS, apply_overrides, config_to_dict, set_masra_parts
from masra.model.build import build_model
from conftest import V_DIM, T_DIM, random_batch, small_config

assert MASRA_PARTS[-1] == "toy", MASRA_PARTS
cfg = small_config()
set_masra_parts(cfg, "toy")
apply_overrides(cfg, ["model.toy.scale_init=2.0", "loss.toy=0.25"])
assert config_to_dict(cfg)["model"]["toy"] == {{"enabled": True, "scale_init": 2.0}}
torch.manual_seed(0)
model, criterion = build_model(cfg, V_DIM, T_DIM)
batch = random_batch([7, 5], [4, 2])
outputs = model.train()(batch)
terms = criterion(outputs, batch)
assert criterion.weight_dict["loss_toy"] == 0.25 and "loss_toy" in criterion.auxiliary_terms
assert terms["diag_toy_scale"].item() == 2.0
baseline = sum(w * terms[k] for k, w in criterion.weight_dict.items() if k in terms and k != "loss_toy")
torch.testing.assert_close(terms["loss"], baseline + 0.25 * terms["loss_toy"])
terms["loss"].backward()
assert model.toy.scale.grad is not None and model.toy.scale.grad != 0
set_masra_parts(cfg, "all")
assert cfg.model.toy.enabled and cfg.model.dai.enabled
print("toy part ok")
'''


def test_a_sixth_part_is_its_own_file_plus_one_registration_line(tmp_path):
    (tmp_path / "toy_part.py").write_text(TOY_PART)
    script = textwrap.dedent(SCRIPT.format(tmp=str(tmp_path), tests=str(TESTS)))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "toy part ok" in result.stdout


def test_the_registry_is_the_one_list_of_parts():
    assert MASRA_PARTS == tuple(part.name for part in PARTS) == ("dai", "sora", "sge", "esta", "lrca")
    cfg = Config()
    for part in PARTS:
        assert type(getattr(cfg.model, part.name)) is part.config and not getattr(cfg.model, part.name).enabled
        for term, weight_field in part.weights.items():
            assert hasattr(cfg.loss, weight_field), (part.name, term)
