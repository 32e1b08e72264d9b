"""The one place that turns a device name ("auto", "cpu", "cuda", "cuda:1") into a ``torch.device``."""

from __future__ import annotations

import torch

from masra.errors import MasraError


def resolve_device(name: str | None = "auto", local_rank: int = 0, field: str = "device") -> torch.device:
    """``auto`` (or None) → this process's CUDA device when available, else CPU; anything else is taken
    literally, and a bare ``cuda`` means ``cuda:local_rank``. ``field`` names the setting in errors."""
    if name in (None, "", "auto"):
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise MasraError(f"not a device name: {err}", field=field) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MasraError("CUDA requested but not available", field=field)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise MasraError(f"{device} is not available on this machine ({torch.cuda.device_count()} CUDA devices)",
                         field=field)
    if device.type == "meta":
        raise MasraError("meta tensors compute nothing; use cpu, cuda or auto", field=field)
    if device.type not in ("cpu", "cuda"):  # mps, xpu, ...: built into this torch and present on this machine?
        try:
            torch.empty(0, device=device)
        except Exception:  # noqa: BLE001 - each backend refuses in its own way
            raise MasraError(f"{name} is not available on this machine", field=field) from None
    return device
