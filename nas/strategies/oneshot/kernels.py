"""A faster backward pass for the supernet's depthwise convolutions on the CPU.

oneDNN's backward of a depthwise convolution (the separable and dilated DARTS ops) takes 10
to 20 times as long as its forward at the supernet's sizes, for the 5x5 and the dilated
kernels most. The input gradient of a depthwise convolution is itself a depthwise
convolution, of the output gradient with the flipped kernel (after spreading it onto the
input grid when the stride is 2), which runs at forward speed. The weight gradient stays
oneDNN's, and is computed only when the weights require gradients (not in a first-order
architecture step, whose forward runs with frozen weights).

:func:`depthwise_to_fast` swaps every depthwise ``nn.Conv2d`` of a module for
:class:`FastDepthwiseConv2d`, which has the same parameters and state dict and the same
results; on other devices it is ``nn.Conv2d`` itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = stride, padding, dilation
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        channels = x.shape[1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            g = grad
            if stride > 1:  # the output gradient on the input's grid, zeros between
                g = torch.zeros_like(x, dtype=grad.dtype)
                g[:, :, ::stride, ::stride] = grad
            grad_x = F.conv2d(g, weight.flip(-2, -1), None, 1, padding, dilation, channels)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], channels,
                [False, True, False])[1]
        return grad_x, grad_w, None, None, None


class FastDepthwiseConv2d(nn.Conv2d):
    """A depthwise, square, "same"-padded ``nn.Conv2d`` whose backward on the CPU is
    :class:`_DepthwiseConv`'s."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv(x, self.weight, self.stride[0], self.padding[0], self.dilation[0])


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, dilation: int) -> torch.Tensor:
    """A depthwise convolution (one ``[C, 1, k, k]`` kernel per channel), with the fast input
    gradient on the CPU when gradients are recorded."""
    if x.device.type != "cpu" or not torch.is_grad_enabled():
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])
    return _DepthwiseConv.apply(x, weight, stride, padding, dilation)


def _is_fast_depthwise(m: nn.Module) -> bool:
    """A depthwise convolution that :class:`FastDepthwiseConv2d` computes exactly."""
    if type(m) is not nn.Conv2d or m.bias is not None or m.groups != m.in_channels or m.groups != m.out_channels:
        return False
    k, s, p, d = m.kernel_size, m.stride, m.padding, m.dilation
    return (k[0] == k[1] and k[0] % 2 == 1 and s[0] == s[1] and s[0] in (1, 2) and d[0] == d[1]
            and p == (d[0] * (k[0] - 1) // 2,) * 2 and m.padding_mode == "zeros")


def depthwise_to_fast(module: nn.Module) -> nn.Module:
    """Turn every depthwise ``nn.Conv2d`` inside ``module`` into a :class:`FastDepthwiseConv2d`
    in place (the same parameter objects); returns ``module``."""
    for m in module.modules():
        if _is_fast_depthwise(m):
            m.__class__ = FastDepthwiseConv2d
    return module
