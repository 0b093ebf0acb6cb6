"""The former home of :class:`segkit.wandb.WandbLogger`: configs saved by earlier runs name
``segkit.loggers.WandbLogger`` and still load. New configs name ``segkit.wandb.WandbLogger``."""
from .wandb import WandbLogger

__all__ = ["WandbLogger"]
