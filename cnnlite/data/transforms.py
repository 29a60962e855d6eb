"""Image transforms: small callables on NumPy images ``(C, H, W)``, chained with ``Compose``.

The CaffeNet128 input pipeline of the benchmark, for example, reads::

    Compose([ResizeShortSide(144), RandomCrop(128, rng=rng), RandomHorizontalFlip(rng=rng),
             CaffeTransform()])                      # 0.04 * (BGR - (104, 117, 124))

and the evaluation pipeline swaps the random crop and the flip for ``CenterCrop(128)``.

Random transforms draw from a NumPy ``Generator``: pass a seeded one (``rng=np.random.
default_rng(0)``) and the same images get the same crops and flips on every run.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.validate import integer, pair, probability, real

__all__ = ["Compose", "ToFloat", "Normalize", "CaffeTransform", "RandomCrop",
           "RandomHorizontalFlip", "CenterCrop", "ResizeShortSide", "resize_bilinear"]

# Random transforms built without an ``rng`` share this one (seeded from the OS).
_default_rng = np.random.default_rng()


def _check_image(image, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3:
        raise OpError(f"{name}: expected an image of shape (C, H, W), got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise OpError(f"{name}: expected an image of real numbers, got dtype {image.dtype}")
    return image


def _as_float(image: np.ndarray) -> np.ndarray:
    """Float images keep their dtype; integer images (uint8 pixels) become float32."""
    return image if image.dtype.kind == "f" else image.astype(np.float32)


def _pair(size, name: str) -> tuple[int, int]:
    """A crop or resize size: one int for a square, or (height, width); each at least 1."""
    return pair(name, "size", size, minimum=1)


def _generator(rng, name: str) -> np.random.Generator:
    """The generator a random transform draws from: the one given, or the shared default."""
    if rng is None:
        return _default_rng
    if not isinstance(rng, np.random.Generator):
        raise ArgumentTypeError(f"{name}: rng must be a numpy.random.Generator (e.g. "
                                f"np.random.default_rng(0)) or None, got {type(rng).__name__}")
    return rng


def _per_channel(values, what: str, name: str, **bounds) -> np.ndarray:
    """One finite number per channel (or one for all), as a 1-D float64 array."""
    array = np.atleast_1d(np.asarray(values))
    if array.ndim != 1 or array.dtype.kind not in "iuf" or array.size == 0:
        raise OpError(f"{name}: {what} must be a number or a list of numbers, got "
                      f"{values!r}")
    return np.array([real(name, what, v, **bounds) for v in array.tolist()])


class Compose:
    """Apply ``transforms`` one after the other: ``Compose([f, g])(x) == g(f(x))``."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)
        for index, transform in enumerate(self.transforms):
            if not callable(transform):
                raise ArgumentTypeError(f"Compose: transforms[{index}] must be callable, got "
                                        f"{type(transform).__name__}")

    def __call__(self, image):
        for transform in self.transforms:
            image = transform(image)
        return image

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class ToFloat:
    """``y = scale * x`` as float32: uint8 pixels 0..255 become 0..1 with the default scale."""

    def __init__(self, scale: float = 1 / 255):
        self.scale = real("ToFloat", "scale", scale)

    def __call__(self, image):
        image = _check_image(image, "ToFloat")
        return image.astype(np.float32) * np.float32(self.scale)

    def __repr__(self) -> str:
        return f"ToFloat(scale={self.scale:g})"


class Normalize:
    """``y[c] = (x[c] - mean[c]) / std[c]`` per channel.   x: (C, H, W), mean and std: (C,)

    A single number for ``mean`` or ``std`` applies to every channel.
    """

    def __init__(self, mean, std):
        self.mean = _per_channel(mean, "mean", "Normalize")
        self.std = _per_channel(std, "std", "Normalize", above=0.0)

    def __call__(self, image):
        image = _as_float(_check_image(image, "Normalize"))
        channels = image.shape[0]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values.size not in (1, channels):
                raise OpError(f"Normalize: {name} has {values.size} values but the image "
                              f"{image.shape} has {channels} channels")
        mean = self.mean.astype(image.dtype).reshape(-1, 1, 1)
        std = self.std.astype(image.dtype).reshape(-1, 1, 1)
        return (image - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class CaffeTransform:
    """The Caffe-style input of CaffeNet128: ``y = scale * (BGR - mean_bgr)``.

    x: (3, H, W) pixels 0..255, in RGB order (as Pillow decodes them) unless
    ``input_order="bgr"``. The channels are reversed to BGR first, because the mean
    (104, 117, 124) was computed, and the network trained, on BGR images (OpenCV's order).
    Output: float32 (3, H, W), roughly in [-5, 6] for scale 0.04.
    """

    def __init__(self, scale: float = 0.04, mean_bgr=(104.0, 117.0, 124.0),
                 input_order: str = "rgb"):
        if input_order not in ("rgb", "bgr"):
            raise OpError(f"CaffeTransform: input_order must be 'rgb' or 'bgr', "
                          f"got {input_order!r}")
        self.scale, self.input_order = real("CaffeTransform", "scale", scale), input_order
        mean_bgr = _per_channel(mean_bgr, "mean_bgr", "CaffeTransform")
        if mean_bgr.size != 3:
            raise OpError(f"CaffeTransform: mean_bgr must hold 3 values (B, G, R), got "
                          f"{mean_bgr.tolist()}")
        self.mean_bgr = mean_bgr.astype(np.float32).reshape(3, 1, 1)

    def __call__(self, image):
        image = _check_image(image, "CaffeTransform")
        if image.shape[0] != 3:
            raise OpError(f"CaffeTransform: expected a colour image (3, H, W), "
                          f"got shape {image.shape}")
        bgr = image[::-1] if self.input_order == "rgb" else image
        return np.float32(self.scale) * (bgr.astype(np.float32) - self.mean_bgr)

    def __repr__(self) -> str:
        return (f"CaffeTransform(scale={self.scale:g}, "
                f"mean_bgr={self.mean_bgr.ravel().tolist()}, input_order={self.input_order!r})")


class RandomCrop:
    """A random ``size`` window of the image, after zero-padding each border by ``padding``.

    x: (C, H, W) -> (C, h, w). The top-left corner is uniform over all windows that fit
    (padding 4 and size 32 on a 32x32 CIFAR image: 9 x 9 positions).
    """

    def __init__(self, size, padding: int = 0, rng: np.random.Generator | None = None):
        self.size = _pair(size, "RandomCrop")
        self.padding = integer("RandomCrop", "padding", padding, minimum=0)
        self.rng = _generator(rng, "RandomCrop")

    def __call__(self, image):
        image = _check_image(image, "RandomCrop")
        pad = self.padding
        if pad:
            image = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
        (height, width), (crop_h, crop_w) = image.shape[1:], self.size
        if crop_h > height or crop_w > width:
            raise OpError(f"RandomCrop: crop {self.size} does not fit in the image of shape "
                          f"{image.shape} (after padding {pad})")
        top = int(self.rng.integers(0, height - crop_h + 1))
        left = int(self.rng.integers(0, width - crop_w + 1))
        return image[:, top:top + crop_h, left:left + crop_w]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p``:  y[c, i, j] = x[c, i, W-1-j]."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        self.p = probability("RandomHorizontalFlip", "p", p)
        self.rng = _generator(rng, "RandomHorizontalFlip")

    def __call__(self, image):
        image = _check_image(image, "RandomHorizontalFlip")
        if self.rng.random() < self.p:
            # A contiguous copy, so that later ops do not pay for a negative-stride view.
            return np.ascontiguousarray(image[:, :, ::-1])
        return image

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class CenterCrop:
    """The central ``size`` window.  x: (C, H, W) -> (C, h, w); odd margins put the extra
    row/column at the bottom/right."""

    def __init__(self, size):
        self.size = _pair(size, "CenterCrop")

    def __call__(self, image):
        image = _check_image(image, "CenterCrop")
        (height, width), (crop_h, crop_w) = image.shape[1:], self.size
        if crop_h > height or crop_w > width:
            raise OpError(f"CenterCrop: crop {self.size} does not fit in the image of shape "
                          f"{image.shape}")
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return image[:, top:top + crop_h, left:left + crop_w]

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


def resize_bilinear(image, size) -> np.ndarray:
    """Resize ``image`` (C, H, W) to (C, h, w) by bilinear interpolation.

    Output pixel (i, j) samples the input at the point whose centre lines up with its own
    (the "half-pixel" convention, PyTorch's ``align_corners=False``):

        y = (i + 0.5) * H / h - 0.5,   x = (j + 0.5) * W / w - 0.5   (clamped at 0),
        out = (1-dy) (1-dx) in[y0, x0] + (1-dy) dx in[y0, x1]
            + dy (1-dx) in[y1, x0] + dy dx in[y1, x1]

    with y0 = floor(y), y1 = min(y0 + 1, H - 1), dy = y - y0 (and the same along x). No
    anti-aliasing: shrinking by more than 2x skips pixels. Integer images come back float32.
    """
    image = _as_float(_check_image(image, "resize_bilinear"))
    out_h, out_w = _pair(size, "resize_bilinear")
    rows, row_weights = _sample_points(image.shape[1], out_h)
    cols, col_weights = _sample_points(image.shape[2], out_w)
    row_weights = row_weights.astype(image.dtype)[:, None]
    col_weights = col_weights.astype(image.dtype)[None, :]
    top = image[:, rows[0]]                      # (C, h, W): the two rows each output row mixes
    bottom = image[:, rows[1]]
    top = top[:, :, cols[0]] * (1 - col_weights) + top[:, :, cols[1]] * col_weights
    bottom = bottom[:, :, cols[0]] * (1 - col_weights) + bottom[:, :, cols[1]] * col_weights
    return top * (1 - row_weights) + bottom * row_weights


def _sample_points(in_size: int, out_size: int):
    """For each output position: the two neighbouring input indices and the weight of the
    second one."""
    source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    source = np.maximum(source, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    return (lower, upper), source - lower


class ResizeShortSide:
    """Resize so that the shorter side becomes ``size``, keeping the aspect ratio.

    x: (C, H, W) with H <= W -> (C, size, floor(W * size / H)) (and the same with H, W
    swapped), bilinear (see ``resize_bilinear``). CaffeNet128 resizes to 144 before its
    128 x 128 crop.
    """

    def __init__(self, size: int):
        self.size = integer("ResizeShortSide", "size", size, minimum=1)

    def __call__(self, image):
        image = _check_image(image, "ResizeShortSide")
        height, width = image.shape[1:]
        if height <= width:
            new_size = (self.size, max(1, int(width * self.size / height)))
        else:
            new_size = (max(1, int(height * self.size / width)), self.size)
        return resize_bilinear(image, new_size)

    def __repr__(self) -> str:
        return f"ResizeShortSide({self.size})"
