"""Training: ``train(cfg)`` runs a whole run (checkpoints, resume, evaluation, DDP); ``engine`` has the loops."""

from masra.train.trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
