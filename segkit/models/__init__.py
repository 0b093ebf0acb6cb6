"""segkit models: plain PyTorch modules, no Lightning."""

from .aspp import ASPP
from .decoder import DeepLabV3PlusDecoder
from .deeplab import DeepLabV3Plus, default_atrous_rates
from .encoders import build_encoder, load_encoder_state, load_weights_file
from .fuse import fold_batchnorm
from .layers import ConvBnAct, SeparableConv2d
from .xception import AlignedXception

__all__ = [
    "ASPP",
    "AlignedXception",
    "ConvBnAct",
    "DeepLabV3Plus",
    "DeepLabV3PlusDecoder",
    "SeparableConv2d",
    "build_encoder",
    "default_atrous_rates",
    "fold_batchnorm",
    "load_encoder_state",
    "load_weights_file",
]
