"""Training-time MLLM priors (docs/priors.md).

``frames`` (PyAV frame sampling) → ``prompts`` (versioned templates) → ``backends`` (chat endpoints) →
``parsing`` (tolerant reply parsing) → ``cache`` (``priors.jsonl``), driven by ``generate`` (the asyncio
scheduler) over the videos ``videos`` matches to an annotation file; then ``encode`` (text encoder →
``{vid}.npz``) and ``check`` (coverage report).
"""
