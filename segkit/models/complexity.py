"""Multiply-adds of a model's forward pass, as the DeepLab papers report model cost."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_macs(model: torch.nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, int]:
    """Multiply-adds of one forward pass, total and per top-level module.

    Counted by PyTorch's FlopCounterMode, which counts convolutions and matrix products (FLOPs = 2 x MACs);
    batch norm, activations, pooling and bilinear resizing are not counted.
    """
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(batch, 3, *size))
    flops = counter.get_flop_counts()
    per_module = {name.split(".", 1)[1]: sum(v.values()) // 2 for name, v in flops.items() if name.count(".") == 1}
    return {"total": counter.get_total_flops() // 2, **per_module}
