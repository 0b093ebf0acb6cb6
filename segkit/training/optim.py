"""The paper's optimizer: SGD with momentum and a "poly" learning rate stepped every iteration.

Weight decay only on convolution and linear weights that are not depthwise: official DeepLab regularizes neither
batch norm, biases nor depthwise weights (``xception_arg_scope(regularize_depthwise=False)`` in
``core/xception.py``: the L2 regularizer is set for ``slim.conv2d`` only).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def poly_lr_lambda(max_steps: int, power: float = 0.9, warmup_steps: int = 0):
    """LR factor at a step: linear warmup, then ``(1 - step / max_steps) ** power``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, 1.0 - step / max_steps) ** power

    return factor


def _decay_split(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights to decay, parameters not to decay): decay only non-depthwise convolution/linear weights."""
    decay, no_decay = [], []
    for m in module.modules():
        for name, p in m.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            depthwise = isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
            if name == "weight" and isinstance(m, (nn.Conv2d, nn.Linear)) and not depthwise:
                decay.append(p)
            else:
                no_decay.append(p)
    return decay, no_decay


def sgd_poly(
    parts: list[tuple[nn.Module, float]],
    momentum: float,
    weight_decay: float,
    max_steps: float,
    power: float = 0.9,
    warmup_steps: int = 0,
) -> dict:
    """Lightning's ``configure_optimizers`` answer: SGD over ``(module, learning rate)`` parts, with weight decay
    on the weights :func:`_decay_split` picks, and the poly schedule over ``max_steps`` stepped every iteration."""
    groups = []
    for module, lr in parts:
        decay, no_decay = _decay_split(module)
        groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay})
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    optimizer = torch.optim.SGD([g for g in groups if g["params"]], lr=parts[-1][1], momentum=momentum)
    if not math.isfinite(max_steps):
        raise ValueError("the poly LR schedule needs a finite length: set trainer.max_steps or trainer.max_epochs")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lr_lambda(int(max_steps), power, warmup_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
