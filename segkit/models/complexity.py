"""Parameters and multiply-adds of a model's forward pass, as the DeepLab papers report model cost."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_macs(model: nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, int]:
    """Multiply-adds of one forward pass in evaluation mode, total and per top-level module.

    Counted by PyTorch's FlopCounterMode, which counts convolutions and matrix products (FLOPs = 2 x MACs);
    batch norm, activations, pooling and bilinear resizing are not counted. The pass runs on a copy of the model
    on PyTorch's meta device: shapes only, nothing computed, the model itself (its mode, its device) untouched.
    """
    shadow = copy.deepcopy(model).to("meta").eval()
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)  # 64-true runs
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        shadow(torch.zeros(batch, getattr(model, "in_channels", 3), *size, device="meta", dtype=dtype))
    flops = counter.get_flop_counts()
    per_module = {name.split(".", 1)[1]: sum(v.values()) // 2 for name, v in flops.items() if name.count(".") == 1}
    return {"total": counter.get_total_flops() // 2, **per_module}


def complexity_table(model: nn.Module, size: tuple[int, int]) -> str:
    """Parameters (millions) and multiply-adds (billions) per top-level module and in total, at input ``size``."""
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
    macs = count_macs(model, size)
    rows = [f"{'module':<10} {'params (M)':>11} {f'mult-adds (G) at {size[0]}x{size[1]}':>26}"]
    rows += [f"{name:<10} {n / 1e6:11.2f} {macs.get(name, 0) / 1e9:26.2f}" for name, n in params.items()]
    rows.append(f"{'total':<10} {sum(params.values()) / 1e6:11.2f} {macs['total'] / 1e9:26.2f}")
    return "\n".join(rows)
