"""The per-type builders of the Caffe loader: one method per Caffe layer type.

``LayerBuilder.<Type>(layer, shapes)`` turns one parsed ``layer { ... }`` into a ``cnnlite.nn``
module, given the shapes (without the batch axis) of its bottom blobs, and returns the module
with the shapes of its top blobs. It also fills the parameters with the layer's Caffe fillers
and records each parameter's ``lr_mult``/``decay_mult`` in the net.

``cnnlite.io.caffe.load_prototxt`` walks the layers of a definition and calls the method named
after each layer's ``type``; a type with no method here is not supported.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cnnlite import nn
from cnnlite.functional.pool import pool_output_size
from cnnlite.io import caffe_layers as layers
from cnnlite.io.caffe_layers import CaffeError
from cnnlite.io.prototxt import Message
from cnnlite.nn.generalized_pool import (EltwiseAffine, GatedMaxAvePool2d, TreePool2d,
                                         TreePoolMaxAve2d)

if TYPE_CHECKING:
    from cnnlite.io.caffe import CaffeNet

__all__ = ["LayerBuilder"]


def _pair(param: Message, name: str, default: int) -> tuple[int, int]:
    """Caffe's ``kernel_size`` / ``kernel_h`` + ``kernel_w`` (also stride, pad, dilation)."""
    short = name.replace("_size", "")
    if f"{short}_h" in param or f"{short}_w" in param:
        return int(param.get(f"{short}_h", default)), int(param.get(f"{short}_w", default))
    values = [int(v) for v in param.all(name)] or [default]
    return (values[0], values[-1])



class LayerBuilder:
    """Builds one layer at a time, knowing the shapes (without the batch) of all blobs."""

    def __init__(self, net: CaffeNet, phase: str, rng, fill_weights: bool = True):
        self.net, self.phase, self.rng, self.fill_weights = net, phase, rng, fill_weights

    def where(self, layer: Message) -> str:
        return f"{layer.where()}: layer {layer.get('name')!r} (type {layer.get('type')!r})"

    def fill(self, tensor, layer, filler: Message, default_type="constant", default_value=0.0,
             caffe_shape=None):
        if self.fill_weights:
            layers.fill(tensor, filler, default_type, default_value, self.rng,
                        self.where(layer), caffe_shape)

    def multipliers(self, layer: Message, key: str, module: nn.Module):
        """``param { lr_mult decay_mult }`` blocks, one per parameter in the order of Caffe's
        blobs (weight, bias; 1 and 1 where a block is missing)."""
        params = layer.all("param")
        for index, (name, _) in enumerate(module.named_parameters()):
            rule = params[index] if index < len(params) else Message()
            self.net.param_multipliers[f"{key}.{name}"] = (float(rule.get("lr_mult", 1.0)),
                                                           float(rule.get("decay_mult", 1.0)))

    # --- one method per Caffe type: (layer, input shapes) -> (module, output shapes) ---------
    def Convolution(self, layer, shapes):
        p = layer.message("convolution_param")
        (c, h, w) = shapes[0]
        kernel, stride = _pair(p, "kernel_size", 1), _pair(p, "stride", 1)
        pad, dilation = _pair(p, "pad", 0), _pair(p, "dilation", 1)
        out = int(p.get("num_output"))
        module = nn.Conv2d(c, out, kernel, stride, pad, dilation, int(p.get("group", 1)),
                           bool(p.get("bias_term", True)))
        self.fill(module.weight, layer, p.message("weight_filler"))
        if module.bias is not None:
            self.fill(module.bias, layer, p.message("bias_filler"))
        size = [(n + 2 * q - (d * (k - 1) + 1)) // s + 1
                for n, k, s, q, d in zip((h, w), kernel, stride, pad, dilation)]
        return module, [(out, *size)]

    def InnerProduct(self, layer, shapes):
        p = layer.message("inner_product_param")
        out = int(p.get("num_output"))
        module = layers.InnerProduct(math.prod(shapes[0]), out, bool(p.get("bias_term", True)))
        self.fill(module.weight, layer, p.message("weight_filler"))
        if module.bias is not None:
            self.fill(module.bias, layer, p.message("bias_filler"))
        return module, [(out,)]

    def Pooling(self, layer, shapes):
        p = layer.message("pooling_param")
        (c, h, w) = shapes[0]
        pool = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}.get(p.get("pool"), p.get("pool", "MAX"))
        if p.get("global_pooling", False):
            module = nn.AdaptiveMaxPool2d(1) if pool == "MAX" else nn.GlobalAvgPool2d()
            return module, [(c, 1, 1)]
        kernel, stride, pad = _pair(p, "kernel_size", 1), _pair(p, "stride", 1), _pair(p, "pad", 0)
        # Caffe clips a window to the padded input, so a kernel larger than the padded input
        # (GoogLeNet's 5x5 average pooling of a 4x4 map at 128x128) pools all of it, once.
        kernel = tuple(min(k, n + 2 * q) for k, n, q in zip(kernel, (h, w), pad))
        if pool == "MAX":
            module = nn.MaxPool2d(kernel, stride, pad, ceil_mode=True)
        elif pool == "AVE":
            module = nn.AvgPool2d(kernel, stride, pad, ceil_mode=True, count_include_pad=True)
        elif pool == "STOCHASTIC" and pad == (0, 0):
            module = nn.StochasticPool2d(kernel, stride, ceil_mode=True, rng=self.rng)
        else:
            raise CaffeError(f"{self.where(layer)}: pooling {pool!r} with pad {pad} is not "
                             f"supported (MAX, AVE, STOCHASTIC without padding)")
        size = [pool_output_size(n, k, s, q, True) for n, k, s, q in zip((h, w), kernel, stride,
                                                                         pad)]
        return module, [(c, *size)]

    def SPP(self, layer, shapes):
        p = layer.message("spp_param")
        height = int(p.get("pyramid_height"))
        mode = "max" if p.get("pool", "MAX") in ("MAX", 0) else "avg"
        module = layers.CaffeSpatialPyramidPool2d(height, mode)
        return module, [(shapes[0][0] * sum(4 ** level for level in range(height)),)]

    def LRN(self, layer, shapes):
        p = layer.message("lrn_param")
        if p.get("norm_region", "ACROSS_CHANNELS") not in ("ACROSS_CHANNELS", 0):
            raise CaffeError(f"{self.where(layer)}: only norm_region ACROSS_CHANNELS is "
                             f"supported")
        return nn.LocalResponseNorm(int(p.get("local_size", 5)), float(p.get("alpha", 1.0)),
                                    float(p.get("beta", 0.75)), float(p.get("k", 1.0))), shapes

    def BatchNorm(self, layer, shapes, scale: Message | None = None):
        p = layer.message("batch_norm_param")
        frozen = bool(p.get("use_global_stats", self.phase == "TEST"))
        maps = len(shapes[0]) == 3
        kind = {(True, True): layers.GlobalStatsBatchNorm2d, (True, False): nn.BatchNorm2d,
                (False, True): layers.GlobalStatsBatchNorm1d,
                (False, False): nn.BatchNorm1d}[(maps, frozen)]
        scale_param = scale.message("scale_param") if scale is not None else Message()
        module = kind(shapes[0][0], eps=float(p.get("eps", 1e-5)),
                      momentum=1.0 - float(p.get("moving_average_fraction", 0.999)),
                      affine=scale is not None, bias=bool(scale_param.get("bias_term", False)))
        if scale is not None:
            self.fill(module.weight, scale, scale_param.message("filler"), "constant", 1.0)
            if module.bias is not None:
                self.fill(module.bias, scale, scale_param.message("bias_filler"))
        return module, shapes

    def Scale(self, layer, shapes):
        p = layer.message("scale_param")
        module = layers.ChannelAffine(shapes[0][0], True, bool(p.get("bias_term", False)))
        self.fill(module.weight, layer, p.message("filler"), "constant", 1.0)
        if module.bias is not None:
            self.fill(module.bias, layer, p.message("bias_filler"))
        return module, shapes

    def Bias(self, layer, shapes):
        module = layers.ChannelAffine(shapes[0][0], weight=False, bias=True)
        self.fill(module.bias, layer, layer.message("bias_param").message("filler"))
        return module, shapes

    def ReLU(self, layer, shapes):
        slope = float(layer.message("relu_param").get("negative_slope", 0.0))
        return (nn.ReLU() if slope == 0 else nn.LeakyReLU(slope)), shapes

    def PReLU(self, layer, shapes):
        p = layer.message("prelu_param")
        module = nn.PReLU(1 if p.get("channel_shared", False) else shapes[0][0])
        self.fill(module.weight, layer, p.message("filler"), "constant", 0.25)
        return module, shapes

    def RReLU(self, layer, shapes):
        p = layer.message("rrelu_param")
        lower, upper = float(p.get("lb", 3.0)), float(p.get("ub", 8.0))
        return nn.RReLU(1.0 / upper, 1.0 / lower, rng=self.rng), shapes

    def APL(self, layer, shapes):
        p = layer.message("apl_param")
        module = nn.APL(shapes[0][0], hinges=int(p.get("sums", 1)), rng=self.rng)
        self.fill(module.a, layer, p.message("slope_filler"), "uniform")
        self.fill(module.b, layer, p.message("offset_filler"), "gaussian")
        return module, shapes

    def ELU(self, layer, shapes):
        return nn.ELU(float(layer.message("elu_param").get("alpha", 1.0))), shapes

    def TanH(self, layer, shapes):
        return nn.Tanh(), shapes

    def Sigmoid(self, layer, shapes):
        return nn.Sigmoid(), shapes

    def BNLL(self, layer, shapes):
        return nn.Softplus(), shapes

    def Power(self, layer, shapes):
        p = layer.message("power_param")
        return layers.Power(p.get("power", 1.0), p.get("scale", 1.0), p.get("shift", 0.0)), shapes

    def Log(self, layer, shapes):
        p = layer.message("log_param")
        return layers.Log(p.get("base", -1.0), p.get("scale", 1.0), p.get("shift", 0.0)), shapes

    def Dropout(self, layer, shapes):
        ratio = float(layer.message("dropout_param").get("dropout_ratio", 0.5))
        return nn.Dropout(ratio, rng=self.rng), shapes

    def Softmax(self, layer, shapes):
        return nn.Softmax(int(layer.message("softmax_param").get("axis", 1))), shapes

    def Flatten(self, layer, shapes):
        p = layer.message("flatten_param")
        start, end = int(p.get("axis", 1)), int(p.get("end_axis", -1))
        full = (1, *shapes[0])
        end = end % len(full)
        return nn.Flatten(start, end), [full[1:start] + (math.prod(full[start:end + 1]),)
                                        + full[end + 1:]]

    def Concat(self, layer, shapes):
        p = layer.message("concat_param")
        axis = int(p.get("axis", p.get("concat_dim", 1)))
        rest = {s[:axis - 1] + s[axis:] for s in shapes}
        if len(rest) != 1:
            raise CaffeError(f"{self.where(layer)}: cannot concatenate shapes "
                             f"{[(None, *s) for s in shapes]} along axis {axis}")
        first = shapes[0]
        size = sum(s[axis - 1] for s in shapes)
        return layers.Concat(axis), [first[:axis - 1] + (size,) + first[axis:]]

    def Slice(self, layer, shapes):
        p = layer.message("slice_param")
        axis = int(p.get("axis", p.get("slice_dim", 1)))
        tops, size = len(layer.all("top")), shapes[0][axis - 1]
        points = [int(v) for v in p.all("slice_point")]
        bounds = [0, *points, size] if points else [size * i // tops for i in range(tops + 1)]
        if len(bounds) != tops + 1 or (not points and size % tops):
            raise CaffeError(f"{self.where(layer)}: cannot cut {size} along axis {axis} into "
                             f"{tops} tops at {points}")
        outs = [shapes[0][:axis - 1] + (b - a,) + shapes[0][axis:]
                for a, b in zip(bounds, bounds[1:])]
        return layers.Slice(points, axis, tops), outs

    def Eltwise(self, layer, shapes):
        p = layer.message("eltwise_param")
        operation = {0: "PROD", 1: "SUM", 2: "MAX"}.get(p.get("operation"),
                                                        p.get("operation", "SUM"))
        if len(set(shapes)) != 1:
            raise CaffeError(f"{self.where(layer)}: inputs of different shapes "
                             f"{[(None, *s) for s in shapes]}")
        return layers.Eltwise(operation, p.all("coeff")), shapes[:1]

    def _learned_pool(self, kind, layer, shapes):
        """The poolings of Lee et al.: window and fillers from ``convolution_param``; Caffe
        keeps each (kh, kw) mask as a (1, 1, kh, kw) blob (its fans are kh * kw)."""
        p = layer.message("convolution_param")
        (c, h, w) = shapes[0]
        kernel, stride = _pair(p, "kernel_size", 1), _pair(p, "stride", 1)
        module = kind(kernel, stride)
        for mask in module.parameters():
            self.fill(mask, layer, p.message("weight_filler"), caffe_shape=(1, 1, *kernel))
        size = [pool_output_size(n, k, s, 0, True) for n, k, s in zip((h, w), kernel, stride)]
        return module, [(c, *size)]

    def GatedMaxAve(self, layer, shapes):
        return self._learned_pool(GatedMaxAvePool2d, layer, shapes)

    def TreepoolMaxAve(self, layer, shapes):
        return self._learned_pool(TreePoolMaxAve2d, layer, shapes)

    def TreepoolKernel1L(self, layer, shapes):
        return self._learned_pool(TreePool2d, layer, shapes)

    def EltwiseAffine(self, layer, shapes):
        p = layer.message("eltwise_affine_param")
        module = EltwiseAffine(shapes[0][0], bool(p.get("channel_shared", False)))
        self.fill(module.slope, layer, p.message("slope_filler"), "constant", 1.0)
        self.fill(module.bias, layer, p.message("bias_filler"))
        return module, shapes

    def Split(self, layer, shapes):
        return layers.Split(len(layer.all("top"))), shapes * len(layer.all("top"))
