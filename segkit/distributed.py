"""segkit's distributed helpers: who this process is, process groups under torchrun, and synchronized batch norm.

Every segkit command runs in one process or in several (DDP started by Lightning, or ``torchrun`` for
``segkit eval``); the helpers at the top answer "which process am I, out of how many" in both cases.

Synchronized batch norm for DDP on GPUs and on CPUs, and the Lightning plugin that installs it:

DeepLabV3+ trains batch norm over the whole batch of 16 (Chen et al., 2018, Sec. 4). Split over N devices,
each sees 16 / N images, too few for good statistics; synchronized batch norm computes them over all
processes, so N devices normalize like one device with the whole batch. On GPUs that is
``torch.nn.SyncBatchNorm``. PyTorch refuses it for CPU tensors (and DDP refuses CPU models holding one), so
on CPUs (gloo) segkit uses :class:`CPUSyncBatchNorm`, the same computation with differentiable all-reduces:
DDP on CPUs, and the CPU tests of what runs on GPUs, synchronize too.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from lightning.pytorch.plugins import TorchSyncBatchNorm
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def running() -> bool:
    """True when this process belongs to a process group."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) when no process group is running."""
    if running():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True in the process that reports (rank 0), and when there is only one."""
    return rank_and_world()[0] == 0


def init_from_env(device: str) -> str:
    """Joins the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL for CUDA devices, gloo
    otherwise. Returns this process's device (``cuda:<LOCAL_RANK>`` with NCCL, else ``device`` as given)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or running():
        return device
    nccl = device.startswith("cuda")
    dist.init_process_group("nccl" if nccl else "gloo")
    if nccl:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    return device


def barrier() -> None:
    """Waits for every process (nothing to wait for in one process)."""
    if running():
        dist.barrier()


def leave() -> None:
    """Ends this process's part in the process group, if one is running."""
    if running():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every process's input is the sum of all processes' output
    gradients (each process's output depends on every input)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over all processes."""
    return _AllReduceSum.apply(tensor)


class CPUSyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are taken over all processes, for CPU tensors (gloo).

    The mean over all processes' values, then the variance around it (two differentiable all-reduces, so
    every process's inputs get the gradient of one batch norm over the whole batch); running statistics
    updated with the unbiased variance, as PyTorch does. In eval mode, or in one process, plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        synced = self.training and running() and dist.get_world_size() > 1
        if not synced:
            return super().forward(input)
        self._check_input_dim(input)
        x = input.to(torch.promote_types(input.dtype, torch.float32))  # bf16/fp16 inputs: statistics in float32
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = all_reduce(x.new_tensor([x.numel() / x.shape[1]]))
        mean = all_reduce(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = all_reduce(centred.square().sum(dims)) / count  # biased: used to normalize
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var * count / (count - 1).clamp(min=1), factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def _replace_batchnorm(module: nn.Module, convert, cls: type[_BatchNorm]) -> nn.Module:
    """``module`` with every batch norm for which ``convert`` is true rebuilt as ``cls`` (same parameters and
    statistics objects)."""
    out = module
    if isinstance(module, _BatchNorm) and convert(module):
        out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _replace_batchnorm(child, convert, cls))
    return out


def convert_sync_batchnorm(module: nn.Module, cpu: bool = False) -> nn.Module:
    """Every batch norm of ``module`` synchronized: ``torch.nn.SyncBatchNorm``, or :class:`CPUSyncBatchNorm`
    for a model that runs on CPUs."""
    if not cpu:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _replace_batchnorm(
        module, lambda m: not isinstance(m, (nn.SyncBatchNorm, CPUSyncBatchNorm)), CPUSyncBatchNorm
    )


class SyncBatchNormPlugin(TorchSyncBatchNorm):
    """Lightning's ``trainer.sync_batchnorm`` plugin, with :class:`CPUSyncBatchNorm` for CPU runs (the segkit
    CLI installs it when ``trainer.sync_batchnorm`` is true)."""

    def apply(self, model: nn.Module) -> nn.Module:
        # called before the model is moved to its device: ask the strategy where it will run
        return convert_sync_batchnorm(model, cpu=model.trainer.strategy.root_device.type == "cpu")

    def revert(self, model: nn.Module) -> nn.Module:
        model = super().revert(model)
        return _replace_batchnorm(model, lambda m: isinstance(m, CPUSyncBatchNorm), nn.BatchNorm2d)
