"""The kernel table and the instantiations it compiles: every kernels/*.cu is listed in
``cnnlite.cuda.module``, every kernel listed is defined in its file, every instantiation
(``module.name_expressions``) has an entry point in the CPU harness, and im2col/col2im, which
are compiled with 32- and 64-bit index arithmetic, give the same results with either, the
launcher picking 32 bits exactly when every index fits.

The compilation for the GPUs, with NVRTC as cupy runs it, is tests/test_cuda_nvrtc.py.
"""
import re

import numpy as np
import pytest

from cnnlite import reference
from cnnlite.cuda import conv, host, module

TOPICS = sorted(module.KERNEL_SOURCES)
INDEX_TYPES = ["int", "long long"]


def test_every_cu_file_is_listed_in_the_kernel_table():
    """A new kernels/*.cu must be registered in cnnlite.cuda.module to be compiled at all."""
    on_disk = sorted(path.name[:-3] for path in module.kernel_folder().iterdir()
                     if path.name.endswith(".cu"))
    assert on_disk == TOPICS


def test_every_kernel_in_the_table_is_defined_in_its_file():
    for topic, names in module.KERNEL_SOURCES.items():
        text = module.source(topic)
        for name in names:
            assert re.search(rf"__global__ void {name}\(", text), (topic, name)


@pytest.mark.parametrize("topic", TOPICS)
def test_every_kernel_is_instantiated_for_float_and_double(topic):
    """... and im2col's for both index types, which its kernels take as a second template
    argument."""
    index_types = INDEX_TYPES if topic in module.INDEX_TYPES else [None]
    expected = [name + (f"<{c_type}>" if index is None else f"<{c_type}, {index}>")
                for name in module.KERNEL_SOURCES[topic] for c_type in ("float", "double")
                for index in index_types]
    assert module.name_expressions(topic) == expected


@pytest.mark.parametrize("topic", TOPICS)
def test_the_harness_has_an_entry_point_for_every_instantiation(harness, topic):
    for expression in module.name_expressions(topic):
        assert harness.by_expression(expression).name == expression


# ---------------------------------------------------------------------------------------------
# im2col and col2im with 32- and 64-bit index arithmetic.

#: x's shape and the window: (x_shape, kh, kw, stride, padding, dilation).
GEOMETRIES = [
    ((2, 3, 7, 6), 3, 3, (1, 1), (1, 1), (1, 1)),
    ((1, 2, 9, 8), 3, 2, (2, 3), (1, 0), (2, 1)),
    ((3, 1, 5, 5), 1, 1, (2, 2), (0, 0), (1, 1)),
]


@pytest.fixture
def kernels(harness, tmp_path_factory):
    """The harness with nothing launched yet (``launched`` says which instantiations ran)."""
    return host.HostKernels(host.build_once(tmp_path_factory.getbasetemp() / "cuda_on_cpu"))


def im2col_and_col2im(kernels, index_type, x, geometry):
    """col = im2col(x), and col2im(col), with the launcher forced to ``index_type``."""
    _, *window = geometry
    with pytest.MonkeyPatch.context() as patch, host.run_on_cpu(kernels):
        patch.setattr(conv, "_index_type", lambda _: index_type)
        col = conv.im2col(x, *window)
        return col, conv.col2im(col, x.shape, *window)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[str(g[0]) for g in GEOMETRIES])
def test_32_and_64_bit_index_arithmetic_give_identical_results(kernels, geometry, dtype):
    x = np.random.default_rng(5).standard_normal(geometry[0]).astype(dtype)
    col32, x32 = im2col_and_col2im(kernels, "int", x, geometry)
    col64, x64 = im2col_and_col2im(kernels, "long long", x, geometry)
    c_type = module.C_TYPES[np.dtype(dtype)]
    assert kernels.launched == {f"{name}<{c_type}, {index}>" for name in ("im2col", "col2im")
                                for index in INDEX_TYPES}
    np.testing.assert_array_equal(col32, col64)
    np.testing.assert_array_equal(x32, x64)
    np.testing.assert_array_equal(col32, reference.conv.im2col(x, *geometry[1:]))


def test_the_launcher_runs_the_32_bit_kernels_on_ordinary_sizes(kernels):
    x = np.ones((2, 3, 7, 6), dtype=np.float32)
    with host.run_on_cpu(kernels):
        conv.col2im(conv.im2col(x, *GEOMETRIES[0][1:]), x.shape, *GEOMETRIES[0][1:])
    assert kernels.launched == {"im2col<float, int>", "col2im<float, int>"}


BIG = 2**31 - 1  # the largest int


@pytest.mark.parametrize("geometry, expected", [
    (((64, 64, 56, 56), 3, 3, (1, 1), (1, 1), (1, 1)), "int"),        # ResNet's 3x3 convs
    (((1, 1, 1, BIG), 1, 1, (1, 1), (0, 0), (1, 1)), "int"),          # x and col: 2**31 - 1
    (((1, 1, 2, 2**30), 1, 1, (1, 1), (0, 0), (1, 1)), "long long"),  # x: 2**31 elements
    (((1, 1, 1, 2**28), 1, 9, (1, 1), (0, 4), (1, 1)), "long long"),  # col: 9 rows of 2**28
    (((1, 1, 2, 2), 1, 1, (1, 2**30), (0, 2**30), (1, 1)), "long long"),  # padded: 2**31 + 2
    (((1, 1, 2, 2), 1, 1, (1, 1), (0, 0), (1, 2**31)), "long long"),  # an argument of 2**31
], ids=["resnet", "largest-int", "x", "col", "padded-width", "dilation"])
def test_the_launcher_takes_64_bit_indices_when_a_value_exceeds_an_int(geometry, expected):
    """No arrays needed: the choice is made from the shapes and the window."""
    assert conv.index_type(*geometry) == expected
