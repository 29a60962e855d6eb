"""The autograd engine: graph building, the backward walk and its bookkeeping."""
import gc

import numpy as np
import pytest

import cnnlite as cl
from cnnlite.autograd import Function, iter_backward


def leaf(values):
    return cl.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


# --- building tensors ------------------------------------------------------------------------

def test_numpy_arrays_keep_their_dtype():
    for dtype in (np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8):
        assert cl.tensor(np.zeros(2, dtype)).dtype == dtype


def test_python_floats_become_float32_and_ints_int64():
    assert cl.tensor(1.5).dtype == np.float32
    assert cl.tensor([[1.0, 2.0], [3.0, 4.0]]).dtype == np.float32
    assert cl.tensor([1, 2]).dtype == np.int64


def test_grad_is_a_plain_array_of_the_tensors_backend():
    x = leaf([1.0, 2.0])
    (x * x).sum().backward()
    assert type(x.grad) is np.ndarray and x.grad.dtype == np.float64


def test_python_numbers_in_ops_take_the_tensors_dtype():
    x = cl.tensor(np.ones(2, np.float32), requires_grad=True)
    y = x * 2.5 + 1
    assert y.dtype == np.float32


def test_only_float_tensors_can_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        cl.tensor([1, 2], requires_grad=True)


# --- the backward walk -----------------------------------------------------------------------

def test_a_chain_of_20000_ops_needs_no_recursion():
    x = leaf(1.0)
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001 ** 20_000, rtol=1e-9)


def test_gradients_of_a_reused_tensor_add_up():
    x = leaf([3.0])
    y = x * x + x           # dy/dx = 2x + 1 = 7
    y.backward()
    np.testing.assert_allclose(x.grad, [7.0])


def test_diamond_graph_is_walked_in_topological_order():
    x = leaf(2.0)
    a = x * 3.0
    b = a.exp()
    c = a * a
    y = b + c                # dy/dx = 3 e^(3x) + 18 x
    y.backward()
    np.testing.assert_allclose(x.grad, 3 * np.exp(6.0) + 36.0)


def test_grad_accumulates_over_backward_calls_until_reset():
    x = leaf([1.0, 2.0])
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 5.0])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_requires_grad_propagates():
    a, b = leaf([1.0]), cl.tensor(np.array([2.0]))
    assert (a * b).requires_grad
    assert not (b * b).requires_grad
    assert (b * b).creator is None


def test_backward_fills_only_leaves_unless_retain_grad():
    x = leaf([1.0, 2.0])
    hidden = x * 2
    kept = x * 3
    kept.retain_grad()
    (hidden * kept).sum().backward()
    assert hidden.grad is None
    np.testing.assert_allclose(kept.grad, x.data * 2)
    np.testing.assert_allclose(x.grad, 12 * x.data)


def test_upstream_gradient_for_a_non_scalar_output():
    x = leaf([1.0, 2.0])
    (x * x).backward(np.array([1.0, 10.0]))
    np.testing.assert_allclose(x.grad, [2.0, 40.0])


# --- no_grad, detach -------------------------------------------------------------------------

def test_no_grad_records_nothing():
    x = leaf([1.0])
    with cl.no_grad():
        y = x * 2
        assert not cl.is_grad_enabled()
        with cl.enable_grad():
            z = x * 2
    assert cl.is_grad_enabled()
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad


def test_detach_cuts_the_graph_and_shares_the_array():
    x = leaf([1.0, 2.0])
    y = x * 2
    d = y.detach()
    assert d.creator is None and not d.requires_grad and d.data is y.data
    (x * d).sum().backward()
    np.testing.assert_allclose(x.grad, d.data)


# --- hooks -----------------------------------------------------------------------------------

def test_hook_sees_the_gradient_and_can_replace_it():
    x = leaf([1.0, 2.0])
    y = x * 3
    seen = []
    y.register_hook(lambda g: seen.append(g.copy()))
    handle = y.register_hook(lambda g: g * 10)
    (y * y).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * y.data)
    np.testing.assert_allclose(x.grad, 2 * y.data * 10 * 3)
    handle.remove()
    x.grad = None
    (x * 3 * (x * 3)).sum().backward()
    np.testing.assert_allclose(x.grad, 18 * x.data)


def test_hook_on_a_leaf():
    x = leaf([1.0])
    x.register_hook(lambda g: g + 1)
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0])


def test_iter_backward_steps_through_the_functions():
    x = leaf([1.0, 2.0])
    loss = (x.exp() * 2).sum()
    names = [step.function.name for step in iter_backward(loss)]
    assert names == ["Sum", "Mul", "Exp"]
    np.testing.assert_allclose(x.grad, 2 * np.exp(x.data))


# --- freeing the graph -----------------------------------------------------------------------

def test_saved_arrays_are_released_after_backward():
    x = leaf([1.0, 2.0])
    y = x.exp()
    product = y * x
    product.sum().backward()
    assert product.creator.saved is None and y.creator.saved is None


def test_second_backward_through_a_freed_graph_is_a_clear_error():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)


def test_the_graph_does_not_keep_dead_outputs_alive():
    x = leaf([1.0])
    y = x * 2
    creator = y.creator
    del y
    gc.collect()
    assert creator.outputs[0]() is None


# --- in-place changes ------------------------------------------------------------------------

def test_in_place_change_of_a_saved_array_is_detected():
    x = leaf([1.0, 2.0])
    w = cl.tensor(np.array([3.0, 4.0]))
    y = x * w
    w += 1
    with pytest.raises(RuntimeError, match=r"Mul: an array it saved.*version 0 -> 1"):
        y.sum().backward()


def test_in_place_change_of_a_saved_output_is_detected():
    x = leaf([1.0, 2.0])
    y = x.exp()
    with cl.no_grad():
        y.mul_(2)
    with pytest.raises(RuntimeError, match="Exp: an array it saved.*output 0"):
        y.sum().backward()


def test_in_place_change_that_backward_does_not_need_is_fine():
    x = leaf([1.0, 2.0])
    w = cl.tensor(np.array([3.0, 4.0]))
    y = x + w                  # Add saves nothing
    w += 1
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0, 1.0])


def test_in_place_change_of_a_tensor_that_requires_grad_needs_no_grad():
    x = leaf([1.0])
    with pytest.raises(RuntimeError, match="in-place"):
        x += 1
    with cl.no_grad():
        x -= 0.5
    np.testing.assert_allclose(x.data, [0.5])


def test_setitem_bumps_the_version():
    t = cl.tensor(np.zeros(3))
    t[1] = 5.0
    assert t._version == 1 and t.data[1] == 5.0


# --- errors ----------------------------------------------------------------------------------

def test_backward_on_a_non_scalar_without_gradient():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"scalar.*shape \(2,\)"):
        (x * 2).backward()


def test_backward_with_a_gradient_of_the_wrong_shape():
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_on_a_tensor_without_graph():
    with pytest.raises(RuntimeError, match="does not require grad"):
        cl.tensor([1.0]).backward()


def test_non_numeric_data_is_a_clear_type_error():
    for bad in ("abc", [1.0, "x"], {"a": 1}, [[1.0, 2.0], [3.0]]):
        with pytest.raises(TypeError, match="numeric"):
            cl.tensor(bad)


def test_non_numeric_operand_names_the_op():
    with pytest.raises(TypeError, match="Add.*numeric"):
        leaf([1.0]) + "a"


def test_shape_mismatch_names_the_op_and_both_shapes():
    with pytest.raises(ValueError, match=r"Mul \(\*\): shapes \(2, 3\) and \(4,\)"):
        cl.tensor(np.ones((2, 3))) * cl.tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\) and \(2, 3\)"):
        cl.tensor(np.ones((2, 3))) @ cl.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4,\)"):
        cl.tensor(np.ones((2, 3))).reshape(4)
    with pytest.raises(ValueError, match=r"concat.*\(2, 3\), \(2, 4\)"):
        cl.concat([cl.tensor(np.ones((2, 3))), cl.tensor(np.ones((2, 4)))])


def test_numpy_errors_get_the_op_name_and_input_shapes():
    with pytest.raises(IndexError, match=r"GetItem: .*\(input shapes: \(2, 3\)\)"):
        cl.tensor(np.ones((2, 3)))[5]


class WrongShapeGradient(Function):
    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return gy.sum(axis=0)


def test_a_backward_returning_the_wrong_shape_is_named():
    x = leaf(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match=r"WrongShapeGradient.backward.*\(3,\).*\(2, 3\)"):
        WrongShapeGradient()(x).sum().backward()
