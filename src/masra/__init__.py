"""MASRA: MLLM-assisted semantic-relational alignment for video temporal grounding."""

from masra.errors import MasraError

__version__ = "0.1.0"

__all__ = ["MasraError", "__version__"]
