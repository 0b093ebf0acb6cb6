"""segkit.models.complexity: multiply-adds counted by hand, and `segkit summary` against the model's own parameters."""

import pytest
from torch import nn

from segkit.commands import main
from segkit.models import DeepLabV3Plus
from segkit.models.complexity import count_macs


def test_count_macs_by_hand():
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(3, 8, 3, padding=1, bias=False))
    model.add_module("dw", nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False))
    macs = count_macs(model, (10, 10))
    assert macs["total"] == 8 * 3 * 9 * 100 + 8 * 9 * 100


def test_summary_command_counts_the_models_parameters(capsys):
    main(["summary", "--encoder", "xception_tiny", "--num_classes", "5", "--size", "65", "--decoder_channels", "32"])
    out = capsys.readouterr().out
    model = DeepLabV3Plus(5, "xception_tiny", 16, decoder_channels=32)
    total = sum(p.numel() for p in model.parameters())
    line = next(x for x in out.splitlines() if x.startswith("total"))
    assert float(line.split()[1]) == pytest.approx(total / 1e6, abs=0.005)
    assert float(line.split()[2]) == pytest.approx(count_macs(model, (65, 65))["total"] / 1e9, abs=0.005)
    assert "input 65x65, output stride 16" in out
