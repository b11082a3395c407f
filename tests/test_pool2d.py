"""Max and average pooling, forward and backward, against the float64 reference; the
reference's gradients against central finite differences; max pooling's tie and padding rules.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy

TOL = 1e-5


@st.composite
def pool_cases(draw):
    """A valid pooling case: window, stride (None = window), padding (numeric at most half
    the window, or a word), input size built so the padded input holds the window."""
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 8))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kernel_size = kh if (kh == kw and draw(st.booleans())) else (kh, kw)
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(st.one_of(
        st.integers(0, min(kh, kw) // 2),
        st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2)),
        st.sampled_from(["valid", "same"]),
    ))
    if isinstance(padding, str):
        ph = pw = 0
    else:
        ph, pw = ref.pair(padding)
    h = max(1, kh - 2 * ph + draw(st.integers(0, 7)))
    w = max(1, kw - 2 * pw + draw(st.integers(0, 7)))
    if padding == "same":
        h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    count_include_pad = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(x_shape=(n, c, h, w), kernel_size=kernel_size, stride=stride, padding=padding,
                count_include_pad=count_include_pad, seed=seed)


def make_data(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.uniform(-1, 1, case["x_shape"]).astype(np.float32)
    y_shape = ref.pool2d_output_shape(case["x_shape"], case["kernel_size"], case["stride"], case["padding"])
    dy = rng.uniform(-1, 1, y_shape).astype(np.float32)
    return x, dy


def geometry(case):
    return dict(kernel_size=case["kernel_size"], stride=case["stride"], padding=case["padding"])


# --------------------------------------------------------------------------------------
# property tests
# --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(case=pool_cases())
def test_max_pool2d_matches_reference(device, case):
    x, dy = make_data(case)
    y = to_numpy(F.max_pool2d(to_device(x, device), **geometry(case)))
    assert y.dtype == np.float32
    ref.assert_close(y, ref.max_pool2d(x, **geometry(case)), TOL, f"max_pool2d {case}")
    dx = to_numpy(F.max_pool2d_backward(to_device(dy, device), to_device(x, device), **geometry(case)))
    ref.assert_close(dx, ref.max_pool2d_backward(dy, x, **geometry(case)), TOL, f"max_pool2d_backward {case}")


@settings(max_examples=40, deadline=None)
@given(case=pool_cases())
def test_avg_pool2d_matches_reference(device, case):
    x, dy = make_data(case)
    cip = case["count_include_pad"]
    y = to_numpy(F.avg_pool2d(to_device(x, device), **geometry(case), count_include_pad=cip))
    assert y.dtype == np.float32
    ref.assert_close(y, ref.avg_pool2d(x, **geometry(case), count_include_pad=cip), TOL, f"avg_pool2d {case}")
    dx = to_numpy(F.avg_pool2d_backward(to_device(dy, device), case["x_shape"], **geometry(case),
                                        count_include_pad=cip))
    want = ref.avg_pool2d_backward(dy, case["x_shape"], **geometry(case), count_include_pad=cip)
    ref.assert_close(dx, want, TOL, f"avg_pool2d_backward {case}")


# --------------------------------------------------------------------------------------
# explicit cases
# --------------------------------------------------------------------------------------

EXPLICIT = [
    # (x_shape, kernel_size, stride, padding)
    ((1, 1, 4, 4), 2, None, 0),             # batch 1, one channel, the classic 2x2/2
    ((2, 3, 28, 28), 2, 2, 0),
    ((2, 3, 7, 7), 3, 2, 1),                # overlapping windows with padding, odd size
    ((1, 2, 5, 6), (3, 2), (1, 2), (1, 1)),
    ((1, 1, 5, 5), 2, 2, "same"),           # 5 -> 3, extra row/column bottom/right
    ((1, 1, 14, 14), 2, 2, "same"),         # 14 -> 7 (the seed shape)
    ((2, 2, 6, 9), (2, 3), None, "valid"),
    ((1, 1, 3, 3), 3, 1, 1),                # every window but the centre one sees padding
    ((1, 1, 1, 1), 1, None, 0),
]


@pytest.mark.parametrize("x_shape,kernel_size,stride,padding", EXPLICIT)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_pool2d_explicit_cases(device, x_shape, kernel_size, stride, padding, count_include_pad):
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(np.float32)
    geo = dict(kernel_size=kernel_size, stride=stride, padding=padding)
    y_shape = ref.pool2d_output_shape(x_shape, kernel_size, stride, padding)
    dy = rng.standard_normal(y_shape).astype(np.float32)
    xd, dyd = to_device(x, device), to_device(dy, device)

    ref.assert_close(to_numpy(F.max_pool2d(xd, **geo)), ref.max_pool2d(x, **geo), TOL, "max forward")
    ref.assert_close(to_numpy(F.max_pool2d_backward(dyd, xd, **geo)),
                     ref.max_pool2d_backward(dy, x, **geo), TOL, "max backward")
    ref.assert_close(to_numpy(F.avg_pool2d(xd, **geo, count_include_pad=count_include_pad)),
                     ref.avg_pool2d(x, **geo, count_include_pad=count_include_pad), TOL, "avg forward")
    ref.assert_close(to_numpy(F.avg_pool2d_backward(dyd, x_shape, **geo, count_include_pad=count_include_pad)),
                     ref.avg_pool2d_backward(dy, x_shape, **geo, count_include_pad=count_include_pad),
                     TOL, "avg backward")


def test_max_pool_never_picks_a_padded_cell(device):
    """All inputs negative: a padded zero would win if padding were a candidate."""
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)   # -1 .. -9
    y = to_numpy(F.max_pool2d(to_device(x, device), 3, stride=1, padding=1))
    want = np.array([[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]], np.float32)
    np.testing.assert_array_equal(y[0, 0], want)
    dx = to_numpy(F.max_pool2d_backward(to_device(np.ones((1, 1, 3, 3), np.float32), device),
                                        to_device(x, device), 3, stride=1, padding=1))
    # -1 wins 4 windows, -2 two, -4 two, -5 one; the gradient stays inside the image.
    np.testing.assert_array_equal(dx[0, 0], [[4, 2, 0], [2, 1, 0], [0, 0, 0]])


def test_max_pool_same_padding_negative_inputs(device):
    x = np.full((1, 1, 5, 5), -3.0, np.float32)
    x[0, 0, 4, 4] = -7.0
    y = to_numpy(F.max_pool2d(to_device(x, device), 2, stride=2, padding="same"))
    assert y.shape == (1, 1, 3, 3)
    # The bottom-right window holds one real cell (-7) and three padded ones.
    assert y[0, 0, 2, 2] == -7.0
    assert np.all(y[0, 0].reshape(-1)[:-1] == -3.0)


def test_max_pool_ties_go_to_the_first_maximum_in_row_major_order(device):
    x = np.zeros((1, 1, 4, 4), np.float32)            # every window is one big tie
    dy = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2)
    dx = to_numpy(F.max_pool2d_backward(to_device(dy, device), to_device(x, device), 2))
    want = np.zeros((4, 4), np.float32)
    want[0, 0], want[0, 2], want[2, 0], want[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx[0, 0], want)
    np.testing.assert_array_equal(dx, ref.max_pool2d_backward(dy, x, 2))

    # A tie between two cells that are not first in the window: the earlier row wins.
    x = np.array([[[[0, 1, 0], [1, 0, 0], [0, 0, 0]]]], np.float32)
    dx = to_numpy(F.max_pool2d_backward(to_device(np.ones((1, 1, 1, 1), np.float32), device),
                                        to_device(x, device), 3))
    np.testing.assert_array_equal(dx[0, 0], [[0, 1, 0], [0, 0, 0], [0, 0, 0]])


def test_max_pool_backward_accumulates_overlapping_windows(device):
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 1] = 5.0                                # the max of every 2x2 window, stride 1
    dy = np.array([[[[1, 2], [3, 4]]]], np.float32)
    dx = to_numpy(F.max_pool2d_backward(to_device(dy, device), to_device(x, device), 2, stride=1))
    want = np.zeros((3, 3), np.float32)
    want[1, 1] = 10.0
    np.testing.assert_array_equal(dx[0, 0], want)


def test_avg_pool_divisor_with_and_without_padding_cells(device):
    x = np.ones((1, 1, 3, 3), np.float32)
    with_pad = to_numpy(F.avg_pool2d(to_device(x, device), 3, stride=1, padding=1, count_include_pad=True))
    real_only = to_numpy(F.avg_pool2d(to_device(x, device), 3, stride=1, padding=1, count_include_pad=False))
    # Corner windows hold 4 real cells of 9, edges 6, the centre 9.
    np.testing.assert_allclose(with_pad[0, 0], np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9, rtol=1e-6)
    np.testing.assert_allclose(real_only[0, 0], np.ones((3, 3)), rtol=1e-6)
    # "same" 2x2/2 on 3x3: the last row and column are padding (bottom/right).
    y = to_numpy(F.avg_pool2d(to_device(np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3), device),
                              2, padding="same", count_include_pad=False))
    np.testing.assert_allclose(y[0, 0], [[2.0, 3.5], [6.5, 8.0]], rtol=1e-6)


def test_default_stride_is_the_window(device):
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 8)).astype(np.float32)
    y_default = to_numpy(F.max_pool2d(to_device(x, device), (3, 2)))
    y_explicit = to_numpy(F.max_pool2d(to_device(x, device), (3, 2), stride=(3, 2)))
    assert y_default.shape == (2, 3, 3, 4)
    np.testing.assert_array_equal(y_default, y_explicit)
    a_default = to_numpy(F.avg_pool2d(to_device(x, device), (3, 2)))
    a_explicit = to_numpy(F.avg_pool2d(to_device(x, device), (3, 2), stride=(3, 2)))
    np.testing.assert_array_equal(a_default, a_explicit)


# --------------------------------------------------------------------------------------
# reference gradients vs finite differences
# --------------------------------------------------------------------------------------

GRAD_CASES = [
    # (x_shape, kernel_size, stride, padding)
    ((2, 2, 5, 5), 2, None, 0),
    ((1, 2, 6, 5), 3, 2, 1),
    ((1, 1, 5, 6), (2, 3), 1, (1, 1)),
    ((1, 2, 5, 5), 2, 2, "same"),
]


@pytest.mark.parametrize("x_shape,kernel_size,stride,padding", GRAD_CASES)
def test_reference_max_pool_gradient_is_finite_differences(x_shape, kernel_size, stride, padding):
    rng = np.random.default_rng(11)
    # Distinct values at least 0.1 apart: a step of 1e-6 never changes which cell wins.
    x = (rng.permutation(int(np.prod(x_shape))) * 0.1 - 1.0).reshape(x_shape)
    geo = dict(kernel_size=kernel_size, stride=stride, padding=padding)
    g = rng.standard_normal(ref.max_pool2d(x, **geo).shape)
    numerical = ref.numerical_gradient(lambda v: float(np.sum(ref.max_pool2d(v, **geo) * g)), x)
    np.testing.assert_allclose(ref.max_pool2d_backward(g, x, **geo), numerical, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("x_shape,kernel_size,stride,padding", GRAD_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_reference_avg_pool_gradient_is_finite_differences(x_shape, kernel_size, stride, padding,
                                                           count_include_pad):
    rng = np.random.default_rng(12)
    x = rng.standard_normal(x_shape)
    geo = dict(kernel_size=kernel_size, stride=stride, padding=padding, count_include_pad=count_include_pad)
    g = rng.standard_normal(ref.avg_pool2d(x, **geo).shape)
    numerical = ref.numerical_gradient(lambda v: float(np.sum(ref.avg_pool2d(v, **geo) * g)), x)
    np.testing.assert_allclose(ref.avg_pool2d_backward(g, x_shape, **geo), numerical, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("width", [16, 18, 34, 35, 7])
def test_max_pool_2x2_backward_ties_and_nan(width):
    """The 2x2 stride-2 backward (the tiled fast path) on rows of 3 to 17 windows: small
    integers make ties common, a few NaNs take the gradient, and the odd last column (width
    35, 7) belongs to no window."""
    rng = np.random.default_rng(width)
    x = rng.integers(0, 3, size=(2, 3, 6, width)).astype(np.float32)
    x[0, 0, 0, 3] = np.nan
    x[1, 2, 5, width - 2] = np.nan
    x[1, 1, 2, 0] = x[1, 1, 3, 1] = np.nan           # two NaNs in one window: the first wins
    dy = rng.standard_normal((2, 3, 3, width // 2)).astype(np.float32)
    got = F.max_pool2d_backward(dy, x, 2)
    want = ref.max_pool2d_backward(dy, x, 2)
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert np.count_nonzero(got) == np.count_nonzero(dy)   # each dy lands on exactly one cell


# --------------------------------------------------------------------------------------
# the training pair: max_pool2d_with_indices / max_pool2d_backward_indices (CPU)
# --------------------------------------------------------------------------------------


def _tied(rng, shape):
    """Values from {0, 1, 2}: most windows hold ties; a few NaNs."""
    x = rng.integers(0, 3, shape).astype(np.float32)
    x.flat[rng.integers(0, x.size, max(1, x.size // 50))] = np.nan
    return x


@settings(max_examples=60, deadline=None)
@given(case=pool_cases(), tied=st.booleans())
def test_max_pool_indices_give_the_same_output_and_gradient(case, tied):
    """The training pair against the reference, and bit for bit against the plain pair (which
    reads x), on random geometry: windows 1..4, strides, numeric and word padding, ties, NaN."""
    x, dy = make_data(case)
    if tied:
        x = _tied(np.random.default_rng(case["seed"]), x.shape)
    geo = geometry(case)
    y, idx = F.max_pool2d_with_indices(x, **geo)
    assert idx.dtype == np.uint8 and idx.shape == y.shape
    np.testing.assert_array_equal(y, F.max_pool2d(x, **geo))
    dx = F.max_pool2d_backward_indices(dy, idx, x.shape, **geo)
    np.testing.assert_array_equal(dx, F.max_pool2d_backward(dy, x, **geo))
    if not tied:
        ref.assert_close(y, ref.max_pool2d(x, **geo), TOL, f"max_pool2d {case}")
        ref.assert_close(dx, ref.max_pool2d_backward(dy, x, **geo), TOL, f"backward {case}")


@pytest.mark.parametrize("h,w", [(28, 28), (14, 14), (16, 16), (17, 33), (2, 2), (9, 15), (30, 46), (3, 2)])
@pytest.mark.parametrize("threads", [1, 2])
def test_max_pool_2x2_indices_on_the_vector_path(h, w, threads):
    """2x2 stride 2 (the AVX2 kernels): widths whose output rows are under 8, exactly 8, and
    past a multiple of 8 (the last vector shifted back), odd sizes (a row and column in no
    window: dx 0 there), ties and NaN; each index against plain loops, dx against the reference."""
    import fastconv

    rng = np.random.default_rng(h * 100 + w)
    x = _tied(rng, (3, 5, h, w))
    dy = rng.standard_normal((3, 5, h // 2, w // 2)).astype(np.float32)
    old = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        y, idx = F.max_pool2d_with_indices(x, 2)
        dx = F.max_pool2d_backward_indices(dy, idx, x.shape, 2)
    finally:
        fastconv.set_num_threads(old)
    want_idx = np.zeros(y.shape, np.uint8)
    for n, c, p, q in np.ndindex(*y.shape):
        cells = x[n, c, 2 * p:2 * p + 2, 2 * q:2 * q + 2].reshape(-1)
        nan = np.isnan(cells)
        want_idx[n, c, p, q] = np.argmax(nan) if nan.any() else np.argmax(cells == cells.max())
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref.max_pool2d(x, 2)))
    want_dx = np.zeros(x.shape, np.float32)
    for n, c, p, q in np.ndindex(*y.shape):
        a, b = divmod(int(want_idx[n, c, p, q]), 2)
        want_dx[n, c, 2 * p + a, 2 * q + b] = dy[n, c, p, q]
    np.testing.assert_array_equal(dx, want_dx)


def test_max_pool_indices_bad_input():
    x = np.zeros((1, 1, 4, 4), np.float32)
    y, idx = F.max_pool2d_with_indices(x, 2)
    dy = np.ones(y.shape, np.float32)
    with pytest.raises(ValueError, match="indices must be the C-contiguous uint8"):
        F.max_pool2d_backward_indices(dy, idx.astype(np.int64), x.shape, 2)
    with pytest.raises(ValueError, match="indices must have shape"):
        F.max_pool2d_backward_indices(dy, idx[:, :, :1], x.shape, 2)
    bad = idx.copy()
    bad[0, 0, 1, 1] = 4                                # outside a 2x2 window
    with pytest.raises(ValueError, match="outside a 2x2 window"):
        F.max_pool2d_backward_indices(dy, bad, x.shape, 2)
    with pytest.raises(ValueError, match="dy must have shape"):
        F.max_pool2d_backward_indices(dy[:, :, :1], idx, x.shape, 2)
    with pytest.raises(TypeError, match="indices must be the uint8 array"):
        F.max_pool2d_backward_indices(dy, [[0]], x.shape, 2)
    with pytest.raises(ValueError, match="more cells than a byte"):
        F.max_pool2d_with_indices(np.zeros((1, 1, 16, 16), np.float32), 16)


def test_max_pool_layer_trains_from_indices_and_infers_without():
    """MaxPool2D keeps indices (not x) in a CPU training forward, x in inference; both
    backward paths give the same dx."""
    from fastconv import layers

    rng = np.random.default_rng(4)
    x = _tied(rng, (2, 3, 10, 12))
    layer = layers.MaxPool2D(2)
    layer.build(x.shape[1:])
    train, infer = layers.Context(training=True), layers.Context(training=False)
    y_train, saved_train = layer.forward(train, x)
    assert saved_train[0] is None and saved_train[1].dtype == np.uint8    # indices, not x
    dy = rng.standard_normal(y_train.shape).astype(np.float32)
    dx_train = layer.backward(train, saved_train, dy)
    y_infer, saved_infer = layer.forward(infer, x)
    assert saved_infer[0] is x and saved_infer[1] is None                 # x, no indices
    np.testing.assert_array_equal(y_train, y_infer)
    np.testing.assert_array_equal(dx_train, layer.backward(infer, saved_infer, dy))
    np.testing.assert_array_equal(dx_train, F.max_pool2d_backward(dy, x, 2))
