"""Checkpoints of other code bases as masra run folders."""
