"""The former home of :class:`segkit.wandb.WandbDashboard`: configs saved by earlier runs name
``segkit.callbacks.WandbDashboard`` and still load. New configs name ``segkit.wandb.WandbDashboard``."""
from .wandb import WandbDashboard

__all__ = ["WandbDashboard"]
