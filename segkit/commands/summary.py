"""``segkit summary``: parameter and multiply-add counts of a DeepLabV3+ model at a given input size.

segkit summary --encoder xception65 --size 513
"""

from __future__ import annotations


def summary(
    encoder: str = "xception65",
    num_classes: int = 21,
    size: int = 513,
    output_stride: int = 16,
    decoder_channels: int = 256,
) -> dict[str, float]:
    """Prints the parameters and multiply-adds of DeepLabV3+ at a square input size.

    Args:
        encoder: encoder name.
        num_classes: number of classes.
        size: input height and width.
        output_stride: encoder output stride.
        decoder_channels: ASPP and decoder width.
    """
    from ..models import DeepLabV3Plus  # here: --help answers without importing PyTorch
    from ..models.complexity import complexity_table, count_macs

    model = DeepLabV3Plus(num_classes, encoder, output_stride, decoder_channels=decoder_channels)
    print(f"DeepLabV3+ {encoder}, {num_classes} classes, input {size}x{size}, output stride {output_stride}")
    print(complexity_table(model, (size, size)))
    return {"params": sum(p.numel() for p in model.parameters()), "macs": count_macs(model, (size, size))["total"]}


def main(args: list[str]) -> None:
    from jsonargparse import CLI

    CLI(summary, args=args)
