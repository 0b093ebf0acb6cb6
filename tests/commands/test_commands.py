"""segkit.commands: the routing table, and errors said in one line."""

import pytest
import torch
from helpers import run_here

CONFIG_NAMES = ["demo.yaml", "voc.yaml", "voc_aug.yaml", "ade20k.yaml", "demo_folder.yaml"]


def test_errors_from_dataloader_workers_keep_their_own_message():
    from torch.utils.data import DataLoader

    from segkit.commands import one_line

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            raise ValueError("cannot decode image file: data/x.jpg")

    with pytest.raises(ValueError) as error:  # as PyTorch re-raises it from a worker process
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert "Original Traceback" in str(error.value)
    assert one_line(error.value) == "cannot decode image file: data/x.jpg"
    assert one_line(ValueError("plain")) == "plain"


def test_no_command_or_a_misspelt_one_lists_the_commands(capsys):
    usage = (
        "usage: segkit COMMAND ... (fit, validate, test, eval, predict, export, convert, summary, data, configs; "
        "`segkit --help` says more)"
    )
    proc = run_here(capsys)
    assert (proc.returncode, proc.stderr.strip()) == (2, usage)
    proc = run_here(capsys, "evl", "--config", "demo.yaml")
    assert (proc.returncode, proc.stderr.strip()) == (2, f"segkit: no command evl; did you mean eval?\n{usage}")
    proc = run_here(capsys, "zzz")
    assert proc.stderr.startswith("segkit: no command zzz\n")


def test_every_command_in_the_table_has_a_module_with_main():
    import importlib

    from segkit.commands import COMMANDS

    for name, module in COMMANDS.items():
        assert callable(importlib.import_module(f"segkit.commands.{module}").main), name
