"""Training: the LightningModule (model, loss, metrics, optimizer), its losses and schedule, and the callbacks
that keep a run's checkpoints whole through interruptions."""

from .task import SegmentationTask

__all__ = ["SegmentationTask"]
