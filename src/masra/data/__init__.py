"""Data layer: annotation readers (``annotations``, ``summary``), features (``features``, ``store``),
priors (``priors``), targets (``targets``) and ``dataset`` (``GroundingDataset`` + ``collate`` → ``batch``).

Import the modules directly; this package imports nothing heavy so that ``masra evaluate`` starts fast.
"""
