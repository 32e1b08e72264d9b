"""The demo's data regimes by name (``masra demo --data`` / ``masra ablate --data``)."""

from __future__ import annotations

from masra.lab.demo.hard import HardSpec
from masra.lab.demo.synthetic import SyntheticSpec, TimelineSpec
from masra.errors import MasraError

REGIMES: dict[str, type[TimelineSpec]] = {"planted": SyntheticSpec, "hard": HardSpec}
DEFAULT_REGIME = "planted"


def regime_spec(name: str) -> TimelineSpec:
    """The default spec of the regime called ``name``."""
    if name not in REGIMES:
        raise MasraError(f"unknown data regime {name!r}; one of {', '.join(REGIMES)}", field="data")
    return REGIMES[name]()
