"""segkit.models.complexity: multiply-adds counted by hand, on a copy of the model that leaves the model as it was."""

import torch
from torch import nn

from segkit.models.complexity import count_macs


def test_count_macs_by_hand_and_the_model_untouched():
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(3, 8, 3, padding=1, bias=False))
    model.add_module("dw", nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False))
    model.add_module("fc", nn.Conv2d(8, 2, 1, bias=False))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    macs = count_macs(model, (10, 12))
    # dense 3x3: 8 outputs x 3 inputs x 9 taps per pixel; depthwise: 8 x 9; pointwise: 2 x 8; 120 pixels
    assert macs == {"total": 120 * (8 * 3 * 9 + 8 * 9 + 2 * 8), "conv": 120 * 216, "dw": 120 * 72, "fc": 120 * 16}
    assert model.training and all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the same count for a float64 model (a `--trainer.precision 64-true` run)
    assert count_macs(model.double(), (10, 12)) == macs
