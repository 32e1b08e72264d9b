"""The MASRA parts, one declaration each (``PART`` in ``<name>.py``; masra.model.parts.base), registered here.

The order is the order in which the model builds the parts' modules (so a seed gives every part the same
initial weights whatever else is on) and calls their hooks at each stage. Adding a part: its file, and its
``PART`` in this tuple.
"""

from masra.model.parts import dai, esta, lrca, sge, sora
from masra.model.parts.base import Part, PartContext, PartModule

PARTS: tuple[Part, ...] = (dai.PART, sora.PART, sge.PART, esta.PART, lrca.PART)

__all__ = ["PARTS", "Part", "PartContext", "PartModule"]
