"""Checkpoint and weight files: PyTorch's (read with one-line errors, written atomically) and TensorFlow's
TensorBundle checkpoints (read without TensorFlow)."""
