"""The lab: what measures masra rather than what masra is.

``masra.lab.demo`` (the embedded synthetic dataset, its two regimes, ``masra demo`` and ``masra ablate``) and
``masra.lab.bench`` (``masra bench ...``: speed and memory against baselines run in the same process). The
library (config, data, model, train, eval, inference, checkpoint, convert, video/features, priors, web, CLI)
imports nothing from here; the lab's own dependencies come with the ``masra[lab]`` extra.
"""
