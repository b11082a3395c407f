"""Bad input raises ValueError or TypeError whose message names the argument (and, for a
shape problem, the shape); float64 and non-contiguous input is accepted and converted.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastconv
import fastconv.functional as F

SHAPE = r"(shape|\(\d+(?:, ?\d+)*,?\))"   # the word "shape" or a printed shape tuple


def word(name):
    """A regex for `name` as a whole identifier: "x" matches "x.shape=" but not "x_shape"."""
    return rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])"


def raises(exc, fn, *args, names, shape=False, **kwargs):
    """Call fn and check it raises exc whose message names every one of `names` (and a shape)."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    for name in names:
        assert re.search(word(name), message), f"message does not name {name!r}: {message!r}"
    if shape:
        assert re.search(SHAPE, message), f"message shows no shape: {message!r}"
    return message


def raises_naming_one_of(exc, fn, *args, names, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert any(re.search(word(n), message) for n in names), \
        f"message names none of {names}: {message!r}"
    return message


X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)
DY = np.zeros((2, 4, 6, 6), np.float32)        # conv2d(X, W) output shape
P = np.zeros((2, 3, 4, 4), np.float32)         # 2x2 pooling of X


# --------------------------------------------------------------------------------------
# conv2d arguments
# --------------------------------------------------------------------------------------


def test_conv2d_x_wrong_rank():
    raises(ValueError, F.conv2d, np.zeros((3, 8, 8), np.float32), W, names=["x"], shape=True)


def test_conv2d_w_wrong_rank():
    raises(ValueError, F.conv2d, X, np.zeros((4, 3, 3), np.float32), names=["w"], shape=True)


def test_conv2d_channel_mismatch():
    raises(ValueError, F.conv2d, X, np.zeros((4, 2, 3, 3), np.float32), names=["x", "w"], shape=True)


def test_conv2d_kernel_larger_than_padded_input():
    raises_naming_one_of(ValueError, F.conv2d, np.zeros((1, 1, 3, 3), np.float32),
                         np.zeros((1, 1, 5, 5), np.float32), padding=0, names=["w", "x", "kernel", "padding"])


def test_conv2d_dilated_kernel_larger_than_padded_input():
    # 3x3 with dilation 3 spans 7 cells; the input padded by 1 is 6.
    raises_naming_one_of(ValueError, F.conv2d, np.zeros((1, 1, 4, 4), np.float32),
                         np.zeros((1, 1, 3, 3), np.float32), padding=1, dilation=3,
                         names=["w", "x", "kernel", "padding", "dilation"])


@pytest.mark.parametrize("stride", [0, -1, (1, 0)])
def test_conv2d_stride_not_positive(stride):
    raises(ValueError, F.conv2d, X, W, stride=stride, names=["stride"])


@pytest.mark.parametrize("dilation", [0, (0, 1), -2])
def test_conv2d_dilation_not_positive(dilation):
    raises(ValueError, F.conv2d, X, W, dilation=dilation, names=["dilation"])


@pytest.mark.parametrize("padding", [-1, (0, -1)])
def test_conv2d_negative_padding(padding):
    raises(ValueError, F.conv2d, X, W, padding=padding, names=["padding"])


@pytest.mark.parametrize("padding", ["full", "causal", ""])
def test_conv2d_padding_word_not_valid_or_same(padding):
    raises(ValueError, F.conv2d, X, W, padding=padding, names=["padding"])


def test_conv2d_bias_wrong_length():
    raises(ValueError, F.conv2d, X, W, np.zeros(3, np.float32), names=["b"], shape=True)


def test_conv2d_pair_of_wrong_length():
    with pytest.raises((ValueError, TypeError), match="stride"):
        F.conv2d(X, W, stride=(1, 1, 1))


@pytest.mark.parametrize("arg", ["stride", "dilation"])
def test_conv2d_string_for_int_is_type_error(arg):
    raises(TypeError, F.conv2d, X, W, **{arg: "2"}, names=[arg])


def test_conv2d_float_stride_is_type_error():
    raises(TypeError, F.conv2d, X, W, stride=1.5, names=["stride"])


# --------------------------------------------------------------------------------------
# conv2d backward: dy and the shape arguments
# --------------------------------------------------------------------------------------


def test_conv2d_backward_input_dy_wrong_shape():
    raises(ValueError, F.conv2d_backward_input, np.zeros((2, 4, 5, 6), np.float32), W, X.shape,
           names=["dy"], shape=True)


def test_conv2d_backward_input_dy_wrong_channels():
    raises(ValueError, F.conv2d_backward_input, np.zeros((2, 5, 6, 6), np.float32), W, X.shape,
           names=["dy"], shape=True)


def test_conv2d_backward_input_x_shape_wrong_rank():
    raises(ValueError, F.conv2d_backward_input, DY, W, (3, 8, 8), names=["x_shape"])


def test_conv2d_backward_input_x_shape_channel_mismatch():
    raises_naming_one_of(ValueError, F.conv2d_backward_input, DY, W, (2, 5, 8, 8), names=["x_shape", "w"])


def test_conv2d_backward_weight_dy_wrong_shape():
    raises(ValueError, F.conv2d_backward_weight, np.zeros((2, 4, 6, 7), np.float32), X, W.shape,
           names=["dy"], shape=True)


def test_conv2d_backward_weight_dy_wrong_batch():
    raises(ValueError, F.conv2d_backward_weight, np.zeros((1, 4, 6, 6), np.float32), X, W.shape,
           names=["dy"], shape=True)


def test_conv2d_backward_weight_w_shape_channel_mismatch():
    raises_naming_one_of(ValueError, F.conv2d_backward_weight, DY, X, (4, 2, 3, 3), names=["w_shape", "x"])


def test_conv2d_backward_bias_dy_wrong_rank():
    raises(ValueError, F.conv2d_backward_bias, np.zeros((4, 6, 6), np.float32), names=["dy"], shape=True)


# --------------------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------------------

POOLS = [F.max_pool2d, F.avg_pool2d]


@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg"])
def test_pool_x_wrong_rank(pool):
    raises(ValueError, pool, np.zeros((3, 8, 8), np.float32), 2, names=["x"], shape=True)


@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg"])
@pytest.mark.parametrize("padding", [2, (0, 2), (2, 1)])
def test_pool_padding_more_than_half_the_window(pool, padding):
    raises(ValueError, pool, X, 3, stride=1, padding=padding, names=["padding"])


@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg"])
def test_pool_negative_padding(pool):
    raises(ValueError, pool, X, 2, padding=-1, names=["padding"])


@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg"])
def test_pool_padding_word_not_valid_or_same(pool):
    raises(ValueError, pool, X, 2, padding="full", names=["padding"])


@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg"])
@pytest.mark.parametrize("kernel_size", [0, (2, 0), -1])
def test_pool_kernel_size_not_positive(pool, kernel_size):
    raises(ValueError, pool, X, kernel_size, names=["kernel_size"])


@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg"])
def test_pool_stride_zero(pool):
    raises(ValueError, pool, X, 2, stride=0, names=["stride"])


@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg"])
def test_pool_window_larger_than_input(pool):
    raises_naming_one_of(ValueError, pool, np.zeros((1, 1, 2, 2), np.float32), 3,
                         names=["kernel_size", "x", "padding"])


@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg"])
@pytest.mark.parametrize("arg", ["kernel_size", "stride"])
def test_pool_string_for_int_is_type_error(pool, arg):
    kwargs = {"kernel_size": 2, "stride": None}
    kwargs[arg] = "2"
    raises(TypeError, pool, X, **kwargs, names=[arg])


def test_max_pool_backward_dy_wrong_shape():
    raises(ValueError, F.max_pool2d_backward, np.zeros((2, 3, 4, 5), np.float32), X, 2,
           names=["dy"], shape=True)


def test_avg_pool_backward_dy_wrong_shape():
    raises(ValueError, F.avg_pool2d_backward, np.zeros((2, 3, 3, 4), np.float32), X.shape, 2,
           names=["dy"], shape=True)


def test_avg_pool_backward_x_shape_wrong_rank():
    raises(ValueError, F.avg_pool2d_backward, P, (3, 8, 8), 2, names=["x_shape"])


# --------------------------------------------------------------------------------------
# activations, softmax, loss, linear, matmul
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backward", [F.relu_backward, F.tanh_backward, F.sigmoid_backward],
                         ids=["relu", "tanh", "sigmoid"])
def test_activation_backward_dy_wrong_shape(backward):
    raises_naming_one_of(ValueError, backward, np.zeros((2, 5), np.float32), np.zeros((2, 4), np.float32),
                         names=["dy", "y"])


@pytest.mark.parametrize("forward", [F.relu, F.tanh, F.sigmoid], ids=["relu", "tanh", "sigmoid"])
def test_activation_string_input_is_type_error(forward):
    with pytest.raises((TypeError, ValueError)):
        forward(np.array(["a", "b"]))


def test_softmax_axis_out_of_range():
    with pytest.raises((ValueError, IndexError), match="axis"):
        F.softmax(np.zeros((2, 3), np.float32), axis=2)


LOGITS = np.zeros((4, 3), np.float32)


@pytest.mark.parametrize("labels", [[0, 1, 3, 0], [0, 1, 2, 7]], ids=["equal_to_C", "far_above"])
def test_cross_entropy_label_too_large(labels):
    raises(ValueError, F.softmax_cross_entropy, LOGITS, np.array(labels, np.int64), names=["labels"])


def test_cross_entropy_label_negative():
    raises(ValueError, F.softmax_cross_entropy, LOGITS, np.array([0, -1, 2, 0], np.int64), names=["labels"])


def test_cross_entropy_labels_wrong_length():
    raises(ValueError, F.softmax_cross_entropy, LOGITS, np.array([0, 1, 2], np.int64), names=["labels"],
           shape=True)


def test_cross_entropy_labels_wrong_rank():
    raises(ValueError, F.softmax_cross_entropy, LOGITS, np.zeros((4, 1), np.int64), names=["labels"])


def test_cross_entropy_float_labels_is_type_error():
    with pytest.raises((TypeError, ValueError), match="labels"):
        F.softmax_cross_entropy(LOGITS, np.array([0.0, 1.5, 2.0, 0.0]))


def test_cross_entropy_logits_wrong_rank():
    raises(ValueError, F.softmax_cross_entropy, np.zeros((4, 3, 1), np.float32), np.zeros(4, np.int64),
           names=["logits"], shape=True)


def test_linear_feature_mismatch():
    raises(ValueError, F.linear, np.zeros((2, 5), np.float32), np.zeros((3, 4), np.float32),
           names=["x", "w"], shape=True)


def test_linear_bias_wrong_length():
    raises(ValueError, F.linear, np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32),
           np.zeros(4, np.float32), names=["b"], shape=True)


def test_linear_x_wrong_rank():
    raises(ValueError, F.linear, np.zeros((2, 4, 1), np.float32), np.zeros((3, 4), np.float32),
           names=["x"], shape=True)


def test_linear_backward_dy_wrong_shape():
    raises(ValueError, F.linear_backward, np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32),
           np.zeros((3, 4), np.float32), names=["dy"], shape=True)


def test_matmul_inner_dimension_mismatch():
    raises_naming_one_of(ValueError, F.matmul, np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32),
                         names=["a", "b"])


# --------------------------------------------------------------------------------------
# empty arrays: refused with a message naming the argument, or computed correctly; never a crash
# --------------------------------------------------------------------------------------

z = lambda *shape: np.zeros(shape, np.float32)   # noqa: E731

EMPTY_CASES = {
    # name: (call, argument the message must name, expected result shape if accepted)
    "conv2d_batch0": (lambda: F.conv2d(z(0, 3, 8, 8), z(4, 3, 3, 3)), "x", (0, 4, 6, 6)),
    "conv2d_channels0": (lambda: F.conv2d(z(2, 0, 8, 8), z(4, 0, 3, 3)), "x", (2, 4, 6, 6)),
    "conv2d_filters0": (lambda: F.conv2d(z(2, 3, 8, 8), z(0, 3, 3, 3)), "w", (2, 0, 6, 6)),
    "max_pool2d_batch0": (lambda: F.max_pool2d(z(0, 3, 8, 8), 2), "x", (0, 3, 4, 4)),
    "avg_pool2d_channels0": (lambda: F.avg_pool2d(z(2, 0, 8, 8), 2), "x", (2, 0, 4, 4)),
    "relu_empty": (lambda: F.relu(z(0)), "x", (0,)),
    "softmax_rows0": (lambda: F.softmax(z(0, 3)), "x", (0, 3)),
    "softmax_classes0": (lambda: F.softmax(z(2, 0)), "x", (2, 0)),
    "linear_batch0": (lambda: F.linear(z(0, 4), z(3, 4)), "x", (0, 3)),
    "matmul_k0": (lambda: F.matmul(z(2, 0), z(0, 3)), "a", (2, 3)),
    "cross_entropy_rows0": (lambda: F.softmax_cross_entropy(z(0, 3), np.zeros(0, np.int64)), "logits", None),
}


@pytest.mark.parametrize("case", list(EMPTY_CASES))
def test_empty_arrays_refused_by_name_or_computed(case):
    call, name, shape = EMPTY_CASES[case]
    try:
        result = call()
    except (ValueError, TypeError) as exc:
        assert re.search(word(name), str(exc)), f"{case}: message does not name {name!r}: {exc}"
        return
    if shape is not None:
        result = np.asarray(result)
        assert result.shape == shape
        assert np.all(result == 0)      # an empty sum is 0, and an empty array has no values


# --------------------------------------------------------------------------------------
# sizes past 32-bit indices: refused cleanly, in a child process with a memory cap so that
# an unchecked 16 GiB allocation fails there instead of exhausting this machine
# --------------------------------------------------------------------------------------

HUGE_CHILD = textwrap.dedent("""
    import resource, sys
    cap = 6 << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import numpy as np
    import fastconv.functional as F
    case = sys.argv[1]
    z = lambda *shape: np.zeros(shape, np.float32)
    try:
        if case == "conv2d_backward_input":      # dx would be 65536*256*256 = 2**32 per image
            F.conv2d_backward_input(z(1, 1, 256, 256), z(1, 65536, 1, 1), (1, 65536, 256, 256))
        elif case == "conv2d_backward_weight":   # dw would be 65536*65536 = 2**32
            F.conv2d_backward_weight(z(1, 65536, 1, 1), z(1, 65536, 1, 1), (65536, 65536, 1, 1))
        elif case == "avg_pool2d_backward":      # dx would be 2**32 per image
            F.avg_pool2d_backward(z(1, 65536, 1, 1), (1, 65536, 256, 256), 256)
    except ValueError as e:
        print("ValueError:", e)
        sys.exit(0)
    except MemoryError as e:
        print("MemoryError:", e)
        sys.exit(3)
    except Exception as e:
        print(type(e).__name__ + ":", e)
        sys.exit(2)
    print("no error")
    sys.exit(4)
""")


def _run_huge(case):
    package_parent = str(Path(fastconv.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=package_parent, OMP_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", HUGE_CHILD, case], capture_output=True, text=True,
                          env=env, cwd=package_parent, timeout=120)
    return done.returncode, (done.stdout + done.stderr).strip()


def test_backward_input_x_shape_past_32bit_refused():
    code, out = _run_huge("conv2d_backward_input")
    assert code == 0, f"expected ValueError, child exited {code}: {out[-2000:]}"
    assert re.search(r"x_shape|size|large|elements|overflow|2\*\*31|2147483647", out), out


@pytest.mark.parametrize("case", ["conv2d_backward_weight", "avg_pool2d_backward"])
def test_other_huge_outputs_refused_cleanly(case):
    # Refusing up front (ValueError) or failing the allocation (MemoryError) are both clean;
    # a crash, another exception or silently "succeeding" is not.
    code, out = _run_huge(case)
    assert code in (0, 3), f"child exited {code}: {out[-2000:]}"


# --------------------------------------------------------------------------------------
# float64 and non-contiguous input is accepted and gives the float32 contiguous result
# --------------------------------------------------------------------------------------

RNG = np.random.default_rng(21)
XB = RNG.standard_normal((2, 3, 16, 18)).astype(np.float32)
WB = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)


def _variants(a):
    """(name, array) with the same values: float64, a strided slice copy-free view, Fortran order."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return [("float64", a.astype(np.float64)),
            ("strided", big[..., ::2]),
            ("fortran", np.asfortranarray(a)),
            ("reversed", np.ascontiguousarray(a[..., ::-1])[..., ::-1])]


OPS = {
    "conv2d": (lambda x, w: F.conv2d(x, w, padding=1), XB, WB),
    "conv2d_backward_input": (lambda dy, w: F.conv2d_backward_input(dy, w, (2, 3, 16, 18), padding=1),
                              RNG.standard_normal((2, 4, 16, 18)).astype(np.float32), WB),
    "conv2d_backward_weight": (lambda dy, x: F.conv2d_backward_weight(dy, x, (4, 3, 3, 3), padding=1),
                               RNG.standard_normal((2, 4, 16, 18)).astype(np.float32), XB),
    "max_pool2d": (lambda x, _: F.max_pool2d(x, 2), XB, None),
    "avg_pool2d": (lambda x, _: F.avg_pool2d(x, 3, stride=1, padding=1), XB, None),
    "relu": (lambda x, _: F.relu(x), XB, None),
    "sigmoid": (lambda x, _: F.sigmoid(x), XB, None),
    "softmax": (lambda x, _: F.softmax(x), XB[0, 0], None),
    "linear": (lambda x, w: F.linear(x, w), XB[0, 0], RNG.standard_normal((5, 18)).astype(np.float32)),
    "matmul": (lambda a, b: F.matmul(a, b), XB[0, 0], RNG.standard_normal((18, 7)).astype(np.float32)),
}


@pytest.mark.parametrize("op,which", [(op, which) for op, (_, _, b) in OPS.items()
                                       for which in ([0, 1] if b is not None else [0])])
@pytest.mark.parametrize("variant", range(4), ids=["float64", "strided", "fortran", "reversed"])
def test_float64_and_non_contiguous_inputs_give_the_contiguous_float32_result(op, which, variant):
    fn, a, b = OPS[op]
    want = np.asarray(fn(a, b))
    args = [a, b]
    name, args[which] = _variants(args[which])[variant]
    got = np.asarray(fn(*args))
    assert got.dtype == np.float32, f"{op} with {name} input returned {got.dtype}"
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"{op} with {name} argument {which}")


def test_input_arrays_are_not_modified():
    x, w = XB.copy(), WB.copy()
    F.conv2d(x, w, padding=1)
    F.relu(x)
    F.max_pool2d(x, 2)
    np.testing.assert_array_equal(x, XB)
    np.testing.assert_array_equal(w, WB)


def test_optimizer_kernels_refuse_arrays_they_cannot_update_in_place():
    """_core.sgd_update / adam_update write into the caller's arrays: a float64, strided or
    read-only one, or a size mismatch, is a clear error naming the argument, never a silent
    update of a converted copy."""
    from fastconv import _core

    p = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="adam_update: p must be a writeable C-contiguous float32"):
        _core.adam_update(np.zeros(10), p, p.copy(), p.copy(), 1e-3, 0.9, 0.1, 0.999, 0.001, 1e-7, 1.0)
    with pytest.raises(ValueError, match="adam_update: g has 3 elements, p has 10"):
        _core.adam_update(p, np.zeros(3, np.float32), p.copy(), p.copy(), 1e-3, 0.9, 0.1, 0.999, 0.001,
                          1e-7, 1.0)
    with pytest.raises(ValueError, match="sgd_update: velocity must be a writeable C-contiguous"):
        _core.sgd_update(p, p, np.zeros(20, np.float32)[::2], 0.1, 0.9, 0.0, False)
    read_only = np.zeros(10, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="sgd_update: p must be a writeable"):
        _core.sgd_update(read_only, p, None, 0.1, 0.0, 0.0, False)
