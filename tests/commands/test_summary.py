"""`segkit summary` against the model's own parameters and multiply-adds."""

import pytest

from segkit.commands import main
from segkit.models import DeepLabV3Plus
from segkit.models.complexity import count_macs


def test_summary_command_counts_the_models_parameters(capsys):
    main(["summary", "--encoder", "xception_tiny", "--num_classes", "5", "--size", "65", "--decoder_channels", "32"])
    out = capsys.readouterr().out
    model = DeepLabV3Plus(5, "xception_tiny", 16, decoder_channels=32)
    total = sum(p.numel() for p in model.parameters())
    line = next(x for x in out.splitlines() if x.startswith("total"))
    assert float(line.split()[1]) == pytest.approx(total / 1e6, abs=0.005)
    assert float(line.split()[2]) == pytest.approx(count_macs(model, (65, 65))["total"] / 1e9, abs=0.005)
    assert "input 65x65, output stride 16" in out
