"""Training-time MLLM priors (docs/priors.md).

``frames`` (PyAV frame sampling) → ``prompts`` (versioned templates) → ``backends`` (chat endpoints) →
``parsing`` (tolerant reply parsing) → ``outcomes`` (a video's record from its requests, completed on
resume) → ``cache`` (``priors.jsonl``, validated when read), driven by ``generate`` (the asyncio scheduler)
over the videos ``videos`` matches to an annotation file; then ``encode`` (text encoder →
``{vid}.npz``) and ``check`` (coverage report).
"""
