"""fastconv's CPU benchmark suite: one command, one table, a JSON file beside it.

    python benchmarks/bench.py [--quick] [--threads 1,2] [--batches 64,256] [--out FILE.json]

writes benchmarks/results/cpu_ops_<machine>.json and .txt unless --out says otherwise
(machine.py: <machine> names the CPU model and generation, the CPUs and fastconv's ISA).

For every op and shape of the two reference networks (LeNet-5 and the small VGG, DESIGN.md) it
times fastconv against a vectorised NumPy baseline (benchmarks/reference_numpy.py: im2col + one
GEMM) and against PyTorch's CPU kernels when torch is installed, side by side in one process,
forward and each backward, at each thread count:

    conv2d       fwd (with bias), bwd_input, bwd_weight      LeNet C1 C3 C5, VGG conv1..conv4
    max/avg pool fwd, bwd                                    2x2 stride 2
    relu/tanh/sigmoid fwd, bwd                               (N, 32, 28, 28)
    softmax cross-entropy  fwd+bwd (loss and dlogits)        (N, 10)

Timing: each provider is warmed up, then timed in `repeats` samples; each sample runs the op
enough times in a row to last at least `min_sample_ms`, and the samples of the providers of one
row are interleaved (fastconv, numpy, torch, fastconv, ...) so background load hits them alike.
By wall time (the default); `--timer thread` times the one-thread rows by the calling thread's
CPU time (time.thread_time), which leaves out the time other processes on a shared machine take
the core away (their pressure on the caches stays in); rows with more threads stay on wall time,
the only measure of a parallel region's length.
The table shows the median per call (the JSON also keeps the min and every sample), the ratios
numpy/fastconv and torch/fastconv (above 1: fastconv is faster), and fastconv's rate: GFLOP/s for
convolutions (2*N*K*C*R*S*P*Q flops for each direction) and GB/s of compulsory traffic for the
memory-bound ops.

Before timing, every op of every provider is run once at batch 2 and checked against fastconv
(assert close), so the three columns compute the same thing.

Threads: fastconv.set_num_threads(t), torch.set_num_threads(t), and threadpoolctl's
threadpool_limits(t, user_api="blas") for NumPy's BLAS (NumPy's element-wise ops are
single-threaded whatever t is).

Run it with the OpenBLAS tuning variables unset; this machine's environment sets two that slow
NumPy's sgemm down (OpenBLAS reads them when it loads, so the script can only warn):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench.py --quick
"""
import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

# OpenBLAS's worker threads busy-wait (yielding) for 2^28 cycles after each call, about 0.1 s
# here; the next provider timed on these 2 cores then shares them with those threads (measured:
# fastconv's 2-thread GEMM ran at half speed in samples right after NumPy's, 30 instead of 61
# GFLOP/s). 2^4 cycles makes them sleep at once; NumPy's own 2-thread GEMM speed is unchanged
# (47-52 GFLOP/s at n = 512 either way). Set before NumPy is imported, which reads it.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
# fastconv (the system's libgomp) and PyTorch (its own bundled libgomp) each keep an OpenMP
# thread pool, and an idle pool spins before it sleeps: after one provider's 2-thread sample,
# its two threads spin on these 2 cores while the next provider's region wants them. With
# other processes on the machine too, measured: the 2-thread rows of sub-millisecond ops took
# 8-12 ms for both libraries (the scheduler's time slice, not the kernels); with passive waiting
# 0.2-1.4 ms. Passive for both runtimes, set before either loads (OMP_WAIT_POLICY=active in the
# environment restores spinning; the header shows the setting).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_numpy as ref  # noqa: E402  (the NumPy baseline beside this file)
import machine  # noqa: E402  (the machine's description and the results file named for it)

import fastconv  # noqa: E402
import fastconv.functional as F  # noqa: E402
import fastconv.layers as L  # noqa: E402

try:
    import torch
    import torch.nn.functional as TF
    import torch.nn.grad as TG
except ImportError:  # the suite runs without torch; its columns then show "-"
    torch = None

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None

PROVIDERS = ("fastconv", "numpy", "torch")
SLOW_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ----------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class ConvShape:
    """One convolution layer: C -> K channels, R x S kernel, H x W input, symmetric padding."""

    name: str
    c: int
    k: int
    h: int
    w: int
    r: int
    s: int
    pad: int

    @property
    def out_hw(self):
        return self.h + 2 * self.pad - self.r + 1, self.w + 2 * self.pad - self.s + 1

    def describe(self):
        padding = "valid" if self.pad == 0 else "same"
        return f"{self.c}x{self.h}x{self.w} -> {self.k}, {self.r}x{self.s} {padding}"


CONVS = (
    ConvShape("lenet_c1", 1, 6, 32, 32, 5, 5, 0),
    ConvShape("lenet_c3", 6, 16, 14, 14, 5, 5, 0),
    ConvShape("lenet_c5", 16, 120, 5, 5, 5, 5, 0),
    ConvShape("vgg_conv1", 1, 32, 28, 28, 3, 3, 1),
    ConvShape("vgg_conv2", 32, 32, 28, 28, 3, 3, 1),
    ConvShape("vgg_conv3", 32, 64, 14, 14, 3, 3, 1),
    ConvShape("vgg_conv4", 64, 64, 14, 14, 3, 3, 1),
)
POOL_MAPS = ((32, 28, 28), (6, 28, 28))  # VGG's first block output, LeNet's C1 output
ACT_MAP = (32, 28, 28)
CLASSES = 10


@dataclass
class Case:
    """One row of the table: an op, a shape and a direction, with a callable per provider.

    Each callable runs the op once and returns its result (a NumPy array, a torch tensor, or a
    (loss, dlogits) pair) so the startup check can compare providers.
    """

    op: str
    shape: str
    direction: str
    batch: int
    flops: float = 0.0  # arithmetic of one call (convolutions)
    bytes: float = 0.0  # compulsory memory traffic of one call (memory-bound ops)
    fns: dict = field(default_factory=dict)
    same_values: bool = True  # False where the providers draw different random numbers


def _randn(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def conv_cases(conv, n, rng):
    """Forward (with bias), backward input and backward weight of one convolution at batch n."""
    x = _randn(rng, n, conv.c, conv.h, conv.w)  # (N, C, H, W)
    w = _randn(rng, conv.k, conv.c, conv.r, conv.s) * np.float32(1 / np.sqrt(conv.c * conv.r * conv.s))
    b = _randn(rng, conv.k)  # (K,)
    p, q = conv.out_hw
    dy = _randn(rng, n, conv.k, p, q)  # (N, K, P, Q)
    flops = 2.0 * n * conv.k * conv.c * conv.r * conv.s * p * q
    pad4 = (conv.pad,) * 4
    op, shape = f"conv2d {conv.name}", conv.describe()
    fwd = Case(op, shape, "fwd", n, flops=flops)
    bwd_in = Case(op, shape, "bwd_input", n, flops=flops)
    bwd_w = Case(op, shape, "bwd_weight", n, flops=flops)
    pad = conv.pad
    fwd.fns["fastconv"] = lambda: F.conv2d(x, w, b, padding=pad)
    bwd_in.fns["fastconv"] = lambda: F.conv2d_backward_input(dy, w, x.shape, padding=pad)
    bwd_w.fns["fastconv"] = lambda: F.conv2d_backward_weight(dy, x, w.shape, padding=pad)
    fwd.fns["numpy"] = lambda: ref.conv2d(x, w, b, (1, 1), pad4)
    bwd_in.fns["numpy"] = lambda: ref.conv2d_backward_input(dy, w, x.shape, (1, 1), pad4)
    bwd_w.fns["numpy"] = lambda: ref.conv2d_backward_weight(dy, x, w.shape, (1, 1), pad4)
    if torch is not None:
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
        fwd.fns["torch"] = lambda: TF.conv2d(tx, tw, tb, padding=pad)
        bwd_in.fns["torch"] = lambda: TG.conv2d_input(tx.shape, tw, tdy, padding=pad)
        bwd_w.fns["torch"] = lambda: TG.conv2d_weight(tx, tw.shape, tdy, padding=pad)
    return [fwd, bwd_in, bwd_w]


def _torch_backward(forward, x, dy):
    """A callable that runs only the backward of y = forward(x) (graph built once, kept)."""
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = forward(tx)
    tdy = torch.from_numpy(dy)
    return lambda: torch.autograd.grad(ty, tx, tdy, retain_graph=True)[0]


def pool_cases(kind, maps, n, rng):
    """Forward and backward of 2x2 stride-2 max or average pooling of (n, *maps)."""
    x = _randn(rng, n, *maps)  # (N, C, H, W)
    c, h, w = maps
    dy = _randn(rng, n, c, h // 2, w // 2)  # (N, C, H/2, W/2)
    op, shape = f"{kind}_pool2d", f"{c}x{h}x{w}, 2x2/2"
    fwd = Case(op, shape, "fwd", n, bytes=4.0 * (x.size + dy.size))
    if kind == "max":
        # Backward as a training step runs it, each library from its forward's saved indices:
        # fastconv's one byte an output (MaxPool2D's CPU path), PyTorch's autograd int64 ones.
        # Traffic: reads the indices and dy, writes dx.
        bwd = Case(op, shape, "bwd", n, bytes=4.0 * x.size + 5.0 * dy.size)
        _, idx = F.max_pool2d_with_indices(x, 2)
        fwd.fns["fastconv"] = lambda: F.max_pool2d(x, 2)
        bwd.fns["fastconv"] = lambda: F.max_pool2d_backward_indices(dy, idx, x.shape, 2)
        fwd.fns["numpy"] = lambda: ref.max_pool2d(x, (2, 2))
        bwd.fns["numpy"] = lambda: ref.max_pool2d_backward(dy, x, (2, 2))
        if torch is not None:
            tx = torch.from_numpy(x)
            fwd.fns["torch"] = lambda: TF.max_pool2d(tx, 2)
            bwd.fns["torch"] = _torch_backward(lambda t: TF.max_pool2d(t, 2), x, dy)
    else:
        bwd = Case(op, shape, "bwd", n, bytes=4.0 * (x.size + dy.size))
        fwd.fns["fastconv"] = lambda: F.avg_pool2d(x, 2)
        bwd.fns["fastconv"] = lambda: F.avg_pool2d_backward(dy, x.shape, 2)
        fwd.fns["numpy"] = lambda: ref.avg_pool2d(x, (2, 2))
        bwd.fns["numpy"] = lambda: ref.avg_pool2d_backward(dy, x.shape, (2, 2))
        if torch is not None:
            tx = torch.from_numpy(x)
            fwd.fns["torch"] = lambda: TF.avg_pool2d(tx, 2)
            bwd.fns["torch"] = _torch_backward(lambda t: TF.avg_pool2d(t, 2), x, dy)
    return [fwd, bwd]


def activation_cases(name, n, rng):
    """Forward and backward (from dy and the forward output y) of relu, tanh or sigmoid."""
    x = _randn(rng, n, *ACT_MAP)  # (N, C, H, W)
    dy = _randn(rng, n, *ACT_MAP)
    fc_fwd, fc_bwd = getattr(F, name), getattr(F, name + "_backward")
    np_fwd, np_bwd = getattr(ref, name), getattr(ref, name + "_backward")
    y = np_fwd(x)  # the forward output the backward reads
    shape = "x".join(map(str, ACT_MAP))
    fwd = Case(name, shape, "fwd", n, bytes=4.0 * 2 * x.size)
    bwd = Case(name, shape, "bwd", n, bytes=4.0 * 3 * x.size)
    fwd.fns["fastconv"] = lambda: fc_fwd(x)
    bwd.fns["fastconv"] = lambda: fc_bwd(dy, y)
    fwd.fns["numpy"] = lambda: np_fwd(x)
    bwd.fns["numpy"] = lambda: np_bwd(dy, y)
    if torch is not None:
        t_fwd = getattr(torch, name)
        tx = torch.from_numpy(x)
        fwd.fns["torch"] = lambda: t_fwd(tx)
        bwd.fns["torch"] = _torch_backward(t_fwd, x, dy)
    return [fwd, bwd]


def cross_entropy_cases(n, rng):
    """Softmax cross-entropy of (n, 10) logits: the loss and dlogits in one go."""
    logits = _randn(rng, n, CLASSES)  # (N, 10)
    labels = rng.integers(0, CLASSES, n)  # (N,) int64
    case = Case("softmax_xent", f"{CLASSES} classes", "fwd+bwd", n, bytes=4.0 * 2 * logits.size)
    case.fns["fastconv"] = lambda: F.softmax_cross_entropy(logits, labels)
    case.fns["numpy"] = lambda: ref.softmax_cross_entropy(logits, labels)
    if torch is not None:
        tl = torch.from_numpy(logits.copy()).requires_grad_(True)
        tlabels = torch.from_numpy(labels)

        def torch_xent():
            loss = TF.cross_entropy(tl, tlabels)
            return loss.detach(), torch.autograd.grad(loss, tl)[0]

        case.fns["torch"] = torch_xent
    return [case]


# ----------------------------------------------------------------------------- generative models
# The ops of a denoising autoencoder (batch 128) and of the default DCGAN as `train dcgan` runs
# it (--suite generative): the generator (width 48) at batch 16, the discriminator at batch 32
# (16 real and 16 generated digits). fastconv against PyTorch only (no NumPy baseline for these).
GAN_G_BATCH, GAN_D_BATCH, GAN_WIDTH = 16, 32, 48
GEN_CONVS = (  # name, batch, C, K, H, kernel, stride, padding "same" (TF's rule)
    ("ae_enc1", 128, 1, 16, 28, 3, 2), ("ae_enc2", 128, 16, 8, 14, 3, 2), ("ae_out", 128, 16, 1, 28, 3, 1),
    ("gan_d1", GAN_D_BATCH, 1, 32, 28, 4, 2), ("gan_d2", GAN_D_BATCH, 32, 64, 14, 4, 2),
)
GEN_DECONVS = (  # name, batch, Cin, Cout, H, kernel, stride: "same" = PyTorch's (padding, output_padding)
    ("ae_dec1", 128, 8, 8, 7, 3, 2, 1, 1), ("ae_dec2", 128, 8, 16, 14, 3, 2, 1, 1),
    ("gan_g0", GAN_G_BATCH, GAN_WIDTH, GAN_WIDTH, 7, 3, 1, 1, 0),
    ("gan_g1", GAN_G_BATCH, GAN_WIDTH, GAN_WIDTH // 2, 7, 4, 2, 1, 0),
    ("gan_g2", GAN_G_BATCH, GAN_WIDTH // 2, 1, 14, 4, 2, 1, 0),
)


def _torch_backward_multi(forward, inputs, dy):
    """A callable running only the backward of y = forward(*inputs), all inputs' gradients."""
    ts = [torch.from_numpy(a.copy()).requires_grad_(True) for a in inputs]
    ty = forward(*ts)
    tdy = torch.from_numpy(dy)
    return lambda: torch.autograd.grad(ty, ts, tdy, retain_graph=True)


def gen_conv_cases(rng):
    cases = []
    for name, n, c, k, h, r, s in GEN_CONVS:
        x = _randn(rng, n, c, h, h)
        w = _randn(rng, k, c, r, r) * np.float32(1 / np.sqrt(c * r * r))
        b = _randn(rng, k)
        p = -(-h // s)
        dy = _randn(rng, n, k, p, p)
        flops = 2.0 * n * k * c * r * r * p * p
        shape = f"{c}x{h}x{h} -> {k}, {r}x{r}/{s} same"
        fwd, bi, bw = (Case(f"conv2d {name}", shape, d, n, flops=flops) for d in ("fwd", "bwd_input", "bwd_weight"))
        fwd.fns["fastconv"] = lambda x=x, w=w, b=b, s=s: F.conv2d(x, w, b, stride=s, padding="same")
        bi.fns["fastconv"] = lambda dy=dy, w=w, x=x, s=s: F.conv2d_backward_input(dy, w, x.shape, stride=s, padding="same")
        bw.fns["fastconv"] = lambda dy=dy, w=w, x=x, s=s: F.conv2d_backward_weight(dy, x, w.shape, stride=s, padding="same")
        if torch is not None:
            pt, pl, pb, pr = F.resolve_padding("same", (h, h), (r, r), (s, s))
            tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
            if (pt, pl) == (pb, pr):
                pad = lambda t: t
                tp = pt
            else:  # the extra pixel bottom/right, as TensorFlow puts it
                pad = lambda t, pads=(pl, pr, pt, pb): TF.pad(t, pads)
                tp = 0
            fwd.fns["torch"] = lambda tx=tx, tw=tw, tb=tb, s=s, tp=tp, pad=pad: TF.conv2d(pad(tx), tw, tb, stride=s, padding=tp)
            bi.fns["torch"] = _torch_backward(lambda t, tw=tw, s=s, tp=tp, pad=pad: TF.conv2d(pad(t), tw, stride=s, padding=tp), x, dy)
            bw.fns["torch"] = _torch_backward(lambda t, tx=tx, s=s, tp=tp, pad=pad: TF.conv2d(pad(tx), t, stride=s, padding=tp), w, dy)
        cases += [fwd, bi, bw]
    return cases


def gen_deconv_cases(rng):
    cases = []
    for name, n, cin, cout, h, r, s, p, op in GEN_DECONVS:
        x = _randn(rng, n, cin, h, h)
        w = _randn(rng, cin, cout, r, r) * np.float32(1 / np.sqrt(cin * r * r))
        b = _randn(rng, cout)
        ho = F.conv2d_transpose_output_size(h, r, s, p, op)
        dy = _randn(rng, n, cout, ho, ho)
        flops = 2.0 * n * cin * cout * r * r * h * h
        shape = f"{cin}x{h}x{h} -> {cout}x{ho}x{ho}, {r}x{r}/{s} same"
        fwd, bi, bw = (Case(f"conv2d_transpose {name}", shape, d, n, flops=flops)
                       for d in ("fwd", "bwd_input", "bwd_weight"))
        kw = dict(stride=s, padding=p, output_padding=op)
        fwd.fns["fastconv"] = lambda x=x, w=w, b=b, kw=kw: F.conv2d_transpose(x, w, b, **kw)
        bi.fns["fastconv"] = lambda dy=dy, w=w, x=x, kw=kw: F.conv2d_transpose_backward_input(dy, w, x.shape, **kw)
        bw.fns["fastconv"] = lambda dy=dy, w=w, x=x, kw=kw: F.conv2d_transpose_backward_weight(dy, x, w.shape, **kw)
        if torch is not None:
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
            fwd.fns["torch"] = lambda tx=tx, tw=tw, tb=tb, kw=kw: TF.conv_transpose2d(tx, tw, tb, **kw)
            bi.fns["torch"] = _torch_backward(lambda t, tw=tw, kw=kw: TF.conv_transpose2d(t, tw, **kw), x, dy)
            bw.fns["torch"] = _torch_backward(lambda t, tx=tx, kw=kw: TF.conv_transpose2d(tx, t, **kw), w, dy)
        cases += [fwd, bi, bw]
    return cases


def gen_elementwise_cases(rng):
    cases = []
    # batch norm: the generator's dense output and its 14x14 maps
    for shape in ((GAN_G_BATCH, 49 * GAN_WIDTH), (GAN_G_BATCH, GAN_WIDTH // 2, 14, 14)):
        x = _randn(rng, *shape)
        dy = _randn(rng, *shape)
        c = shape[1]
        g, be = np.ones(c, np.float32), np.zeros(c, np.float32)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        _, mean, inv = F.batch_norm_training(x, g, be)
        label = "x".join(map(str, shape[1:]))
        fwd = Case("batch_norm", label, "fwd", shape[0], bytes=4.0 * 3 * x.size)
        bwd = Case("batch_norm", label, "bwd", shape[0], bytes=4.0 * 4 * x.size)
        fwd.fns["fastconv"] = lambda x=x, g=g, be=be, rm=rm, rv=rv: F.batch_norm_training(x, g, be, rm, rv)[0]
        bwd.fns["fastconv"] = lambda dy=dy, x=x, mean=mean, inv=inv, g=g: F.batch_norm_backward(dy, x, mean, inv, g)[0]
        if torch is not None:
            trm, trv = torch.zeros(c), torch.ones(c)
            tg, tb = torch.ones(c), torch.zeros(c)
            tx = torch.from_numpy(x)
            fwd.fns["torch"] = lambda tx=tx, trm=trm, trv=trv, tg=tg, tb=tb: TF.batch_norm(
                tx, trm, trv, tg, tb, training=True, momentum=0.01, eps=1e-3)
            bwd.fns["torch"] = (lambda f=_torch_backward_multi(
                lambda t, gg, bb, trm=trm, trv=trv: TF.batch_norm(t, trm, trv, gg, bb, training=True, eps=1e-3),
                [x, g, be], dy): f()[0])
        cases += [fwd, bwd]
    # activations: LeakyReLU 0.2 at the discriminator's maps, elu and gelu on its first maps
    for name, maps, fc_f, fc_b, t_f in (
            ("leaky_relu", (32, 14, 14), lambda x: F.leaky_relu(x, 0.2), lambda dy, y, x: F.leaky_relu_backward(dy, y, 0.2),
             lambda t: TF.leaky_relu(t, 0.2)),
            ("leaky_relu", (64, 7, 7), lambda x: F.leaky_relu(x, 0.2), lambda dy, y, x: F.leaky_relu_backward(dy, y, 0.2),
             lambda t: TF.leaky_relu(t, 0.2)),
            ("elu", (32, 14, 14), F.elu, lambda dy, y, x: F.elu_backward(dy, y), lambda t: TF.elu(t)),
            ("gelu", (32, 14, 14), F.gelu, lambda dy, y, x: F.gelu_backward(dy, x), lambda t: TF.gelu(t))):
        x = _randn(rng, GAN_D_BATCH, *maps)
        dy = _randn(rng, GAN_D_BATCH, *maps)
        y = fc_f(x)
        label = "x".join(map(str, maps))
        fwd = Case(name, label, "fwd", GAN_D_BATCH, bytes=4.0 * 2 * x.size)
        bwd = Case(name, label, "bwd", GAN_D_BATCH, bytes=4.0 * 3 * x.size)
        fwd.fns["fastconv"] = lambda x=x, f=fc_f: f(x)
        bwd.fns["fastconv"] = lambda dy=dy, y=y, x=x, f=fc_b: f(dy, y, x)
        if torch is not None:
            tx = torch.from_numpy(x)
            fwd.fns["torch"] = lambda tx=tx, f=t_f: f(tx)
            bwd.fns["torch"] = _torch_backward(t_f, x, dy)
        cases += [fwd, bwd]
    # dropout 0.2 (training) at the discriminator's two maps: the layer's forward (mask drawn,
    # x * mask); the backward is one multiply
    for maps in ((32, 14, 14), (64, 7, 7)):
        x = _randn(rng, GAN_D_BATCH, *maps)
        label = "x".join(map(str, maps))
        case = Case("dropout 0.2", label, "fwd", GAN_D_BATCH, bytes=4.0 * 3 * x.size, same_values=False)
        case.fns["fastconv"] = lambda x=x, layer=L.Dropout(0.2, seed=0): layer(x, training=True)
        if torch is not None:
            tx = torch.from_numpy(x)
            case.fns["torch"] = lambda tx=tx: TF.dropout(tx, 0.2, training=True)
        cases.append(case)
    # upsampling x2: the autoencoder's two decoder resolutions
    for maps in ((8, 7, 7), (16, 14, 14)):
        for mode in ("nearest", "bilinear"):
            x = _randn(rng, 128, *maps)
            dy = _randn(rng, 128, maps[0], maps[1] * 2, maps[2] * 2)
            label = "x".join(map(str, maps)) + " x2"
            fwd = Case(f"upsample2d {mode}", label, "fwd", 128, bytes=4.0 * (x.size + dy.size))
            bwd = Case(f"upsample2d {mode}", label, "bwd", 128, bytes=4.0 * (x.size + dy.size))
            fwd.fns["fastconv"] = lambda x=x, mode=mode: F.upsample2d(x, 2, mode)
            bwd.fns["fastconv"] = lambda dy=dy, x=x, mode=mode: F.upsample2d_backward(dy, x.shape, 2, mode)
            if torch is not None:
                extra = {} if mode == "nearest" else {"align_corners": False}
                tf_ = lambda t, mode=mode, extra=extra: TF.interpolate(t, scale_factor=2, mode=mode, **extra)
                tx = torch.from_numpy(x)
                fwd.fns["torch"] = lambda tx=tx, f=tf_: f(tx)
                bwd.fns["torch"] = _torch_backward(tf_, x, dy)
            cases += [fwd, bwd]
    # the discriminator's loss: BCE from logits on (32, 1)
    z = _randn(rng, GAN_D_BATCH, 1)
    t = (rng.random((GAN_D_BATCH, 1)) > 0.5).astype(np.float32)
    case = Case("bce_with_logits", f"{GAN_D_BATCH}x1", "fwd+bwd", GAN_D_BATCH, bytes=4.0 * 3 * z.size)
    case.fns["fastconv"] = lambda: F.binary_cross_entropy_with_logits(z, t)
    if torch is not None:
        tz = torch.from_numpy(z.copy()).requires_grad_(True)
        tt = torch.from_numpy(t)

        def torch_bce():
            loss = TF.binary_cross_entropy_with_logits(tz, tt)
            return loss.detach(), torch.autograd.grad(loss, tz)[0]

        case.fns["torch"] = torch_bce
    cases.append(case)
    return cases


def build_generative_cases(seed=0):
    """The autoencoder's and the DCGAN's rows (each at its own batch)."""
    rng = np.random.default_rng(seed)
    return gen_conv_cases(rng) + gen_deconv_cases(rng) + gen_elementwise_cases(rng)


def build_cases(n, seed=0):
    """Every row of the table at batch n."""
    rng = np.random.default_rng(seed)
    cases = []
    for conv in CONVS:
        cases += conv_cases(conv, n, rng)
    for kind in ("max", "avg"):
        for maps in POOL_MAPS:
            cases += pool_cases(kind, maps, n, rng)
    for name in ("relu", "tanh", "sigmoid"):
        cases += activation_cases(name, n, rng)
    cases += cross_entropy_cases(n, rng)
    return cases


# ----------------------------------------------------------------------------- check
def _as_numpy(result):
    if isinstance(result, tuple):
        return tuple(_as_numpy(r) for r in result)
    if torch is not None and isinstance(result, torch.Tensor):
        return result.detach().numpy()
    return np.asarray(result, dtype=np.float32)


def check_providers(cases):
    """Assert every provider computes what fastconv computes (run once, before timing)."""
    for case in cases:
        if not case.same_values:   # dropout: each provider its own generator
            continue
        want = _as_numpy(case.fns["fastconv"]())
        for provider, fn in case.fns.items():
            if provider == "fastconv":
                continue
            got = _as_numpy(fn())
            pairs = zip(got, want) if isinstance(want, tuple) else [(got, want)]
            for g, w in pairs:
                g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
                scale = float(np.max(np.abs(w))) if w.size else 1.0
                np.testing.assert_allclose(
                    g, w, rtol=1e-3, atol=1e-4 * max(scale, 1.0),
                    err_msg=f"{provider} disagrees with fastconv on {case.op} {case.shape} {case.direction}")


# ----------------------------------------------------------------------------- timing
@dataclass
class TimingPlan:
    """How long to time each row: warm-up calls, samples, minimum length of a sample."""

    warmup: int = 2
    repeats: int = 7
    min_sample_s: float = 0.005
    max_row_s: float = 3.0  # cut the repeats of a slow row so the whole row stays near this
    timer: str = "wall"     # "wall" (time.perf_counter) or "thread" (time.thread_time)


def time_row(fns, plan):
    """Median and min seconds per call of each callable, their samples interleaved.

    The warm-up calls are timed too: the fastest of them sets how many calls make one sample.
    """
    inner = {}
    for name, fn in fns.items():
        fastest = float("inf")
        for _ in range(max(plan.warmup, 1)):
            t0 = time.perf_counter()
            fn()
            fastest = min(fastest, time.perf_counter() - t0)
        inner[name] = max(1, int(plan.min_sample_s / max(fastest, 1e-7)))
    samples = {name: [] for name in fns}
    clock = time.thread_time if plan.timer == "thread" else time.perf_counter
    started = time.perf_counter()
    for i in range(plan.repeats):
        for name, fn in fns.items():
            t0 = clock()
            for _ in range(inner[name]):
                fn()
            samples[name].append((clock() - t0) / inner[name])
        if i + 1 >= min(3, plan.repeats) and time.perf_counter() - started > plan.max_row_s:
            break  # a slow row: three samples each is enough
    return {
        name: {"median_s": statistics.median(s), "min_s": min(s), "samples_s": s, "calls_per_sample": inner[name]}
        for name, s in samples.items()
    }


class Threads:
    """Context: every provider limited to t threads."""

    def __init__(self, t):
        self.t = t
        self.limits = None

    def __enter__(self):
        fastconv.set_num_threads(self.t)
        if torch is not None:
            torch.set_num_threads(self.t)
        if threadpoolctl is not None:
            self.limits = threadpoolctl.threadpool_limits(limits=self.t, user_api="blas")
        return self

    def __exit__(self, *exc):
        if self.limits is not None:
            self.limits.restore_original_limits()


# ----------------------------------------------------------------------------- header
def _lscpu():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def machine_header():
    """What the numbers were measured on: CPU, ISA, library versions, BLAS, environment."""
    cpu = _lscpu()
    cores = None
    try:
        cores = int(cpu.get("Core(s) per socket", 0)) * int(cpu.get("Socket(s)", 0)) or None
    except ValueError:
        pass
    header = machine.describe(fastconv.cpu_isa())  # CPU model and generation, date, load: the file's name
    header.update({
        "cpu_model": cpu.get("Model name", header["cpu_model"]),
        "cores": cores or header["cores"],
        "python": platform.python_version(),
        "fastconv": fastconv.__version__,
        "fastconv_isa": fastconv.cpu_isa(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "threadpoolctl": threadpoolctl.__version__ if threadpoolctl is not None else None,
        "blas": [],
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
        "omp_env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_", "MKL_"))},
    })
    if threadpoolctl is not None:
        pools = threadpoolctl.threadpool_info()
        header["threadpools"] = [{k: (os.path.basename(lib[k]) if k == "filepath" and lib.get(k) else lib.get(k))
                                   for k in ("user_api", "internal_api", "version", "filepath")}
                                 for lib in pools]  # e.g. whether fastconv and torch share one libgomp
        for lib in pools:
            if lib.get("user_api") == "blas":
                header["blas"].append({k: (os.path.basename(lib[k]) if k == "filepath" and lib.get(k) else lib.get(k))
                                   for k in ("internal_api", "version", "architecture", "filepath")})
    return header


def print_header(h):
    print("fastconv CPU benchmark")
    print(f"  machine   {h['cpu_model']}" + (f" ({h['cpu_uarch']})" if h.get("cpu_uarch") else "") +
          f", {h['cores']} cores, {h['cpus']} CPUs "
          f"(SIMD: {' '.join(h['cpu_flags_simd']) or '?'}), load average {h['load_average_start'][0]:.2f}")
    print(f"  fastconv  {h['fastconv']}, ISA {h['fastconv_isa']}")
    print(f"  numpy     {h['numpy']}, BLAS: " + ("; ".join(
        f"{b['internal_api']} {b['version']} ({b['architecture']})" for b in h["blas"]) or
        ("unknown (pip install threadpoolctl)" if threadpoolctl is None else "none found")))
    print(f"  torch     {h['torch'] or 'not installed (torch columns show -)'}")
    print(f"  env       OPENBLAS_*: {h['openblas_env'] or 'none'}; OMP/GOMP/MKL: {h['omp_env'] or 'none'}")
    print(f"  python    {h['python']}, {h['date_utc']} UTC")


def warn_slow_env():
    slow = [v for v in SLOW_OPENBLAS_VARS if v in os.environ]
    if slow:
        print(f"WARNING: {', '.join(f'{v}={os.environ[v]}' for v in slow)} set: OpenBLAS tuning variables that "
              "slow NumPy's sgemm down on this machine. Rerun as: env " + " ".join(f"-u {v}" for v in slow) +
              " python benchmarks/bench.py ...", file=sys.stderr)
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cpus:
        print(f"WARNING: load average {load:.1f} on {cpus} CPUs: other processes are competing for the "
              "cores, so the timings (the multi-thread ones most) are noisy", file=sys.stderr)
    if threadpoolctl is None:
        print("WARNING: threadpoolctl is not installed: NumPy's BLAS runs with its default thread count "
              "in every row (pip install threadpoolctl)", file=sys.stderr)


# ----------------------------------------------------------------------------- table
def _ms(r):
    return "-" if r is None else f"{r['median_s'] * 1e3:.3f}"


def _ratio(r, base):
    if r is None or base is None:
        return "-"
    return f"{r['median_s'] / base['median_s']:.2f}x"


def _rate(case, r):
    if r is None:
        return "-"
    if case.flops:
        return f"{case.flops / r['median_s'] / 1e9:.3g} GF/s"
    if case.bytes:
        return f"{case.bytes / r['median_s'] / 1e9:.3g} GB/s"
    return "-"


COLUMNS = ("op", "shape", "dir", "N", "thr", "fastconv ms", "numpy ms", "torch ms",
           "np/fc", "torch/fc", "fastconv rate", "torch rate")


def table_row(case, threads, timings):
    fc, npy, tc = (timings.get(p) for p in PROVIDERS)
    return (case.op, case.shape, case.direction, str(case.batch), str(threads), _ms(fc), _ms(npy), _ms(tc),
            _ratio(npy, fc), _ratio(tc, fc), _rate(case, fc), _rate(case, tc))


def print_markdown(rows):
    """The same table as GitHub markdown (for pasting into README.md)."""
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(COLUMNS))) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def print_table(rows):
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) for i in range(len(COLUMNS))]
    left = {0, 1, 2}

    def fmt(r):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    print(fmt(COLUMNS))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt(r))


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="batch 64 only, fewer and shorter samples (about two minutes)")
    p.add_argument("--threads", type=machine.int_list(), default=[1, 2], help="thread counts (default 1,2)")
    p.add_argument("--batches", type=machine.int_list(), default=None, help="batch sizes (default 64,256; --quick: 64)")
    p.add_argument("--out", default=None,
                   help="JSON file to write, the printed table going to the same name with .txt (default: "
                        "benchmarks/results/cpu_ops_<machine>.json, generative_ops_<machine>.json with "
                        "--suite generative; <machine> names the CPU, its generation, CPUs and ISA)")
    p.add_argument("--filter", default="", help="only rows whose op contains this text (e.g. conv2d, pool, vgg)")
    p.add_argument("--repeats", type=int, default=None, help="samples per row (default 7; --quick: 3)")
    p.add_argument("--warmup", type=int, default=None,
                   help="timed warm-up calls per provider, at least 1 (default 2; --quick: 1)")
    p.add_argument("--min-sample-ms", type=float, default=None,
                   help="each sample repeats the op to last at least this long (default 5; --quick: 1)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    p.add_argument("--no-check", action="store_true", help="skip the startup check that providers agree")
    p.add_argument("--markdown", action="store_true", help="also print the table as GitHub markdown")
    p.add_argument("--suite", choices=("classic", "generative"), default="classic",
                   help="classic: LeNet-5 and the small VGG at --batches (default); generative: the denoising "
                        "autoencoder's (batch 128) and the DCGAN's (batch 64) ops, fastconv against PyTorch")
    p.add_argument("--timer", choices=("wall", "thread"), default="wall",
                   help="wall: wall time (default); thread: the calling thread's CPU time for the "
                        "one-thread rows (robust to other processes on a shared machine), wall time "
                        "for rows with more threads")
    p.add_argument("--gemm", action="store_true",
                   help="afterwards run benchmarks/bench_gemm.py (fastconv's sgemm vs NumPy) with the same "
                        "threads, writing OUT's stem + _gemm.json (with no --out: gemm_<machine>.json)")
    return p.parse_args(argv)


def main(argv=None):
    global torch
    args = parse_args(argv)
    if args.no_torch:
        torch = None
    batches = args.batches or ([64] if args.quick else [64, 256])
    plan = TimingPlan(
        warmup=max(1, args.warmup if args.warmup is not None else (1 if args.quick else 2)),
        repeats=args.repeats if args.repeats is not None else (3 if args.quick else 7),
        min_sample_s=(args.min_sample_ms if args.min_sample_ms is not None else (1 if args.quick else 5)) / 1e3,
        max_row_s=1.0 if args.quick else 3.0,
        timer=args.timer,
    )
    warn_slow_env()
    header = machine_header()
    args.gemm_out = None if args.out is None else os.path.splitext(args.out)[0] + "_gemm.json"
    if args.out is None:
        args.out = machine.results_path("generative_ops" if args.suite == "generative" else "cpu_ops", header)
    with machine.Tee(os.path.splitext(args.out)[0] + ".txt"):
        run(args, batches, plan, header)
    if args.gemm:
        run_gemm_benchmark(args)


def run(args, batches, plan, header):
    """Times every row and prints the table (main's body, its output also going to the .txt)."""
    print_header(header)
    print(f"  timing    median of {plan.repeats} samples after {plan.warmup} warm-up calls, each sample "
          f">= {plan.min_sample_s * 1e3:g} ms; ratios above 1x mean fastconv is faster; "
          "rates are GFLOP/s (conv) or GB/s of compulsory traffic"
          + ("; one-thread rows timed by thread CPU time, the others by wall time"
             if plan.timer == "thread" else ""))
    print(flush=True)

    def wanted(cases):
        return [c for c in cases if args.filter in c.op]

    if args.suite == "generative":
        batches = [0]  # each row has its own batch
        build = lambda n, seed=0: build_generative_cases(seed)
    else:
        build = build_cases

    if not args.no_check:
        check = wanted(build(2, seed=1))
        with Threads(max(args.threads)):
            check_providers(check)
        print(f"check: numpy{' and torch agree' if torch is not None else ' agrees'} with fastconv on all "
              f"{len(check)} rows (batch 2)\n", flush=True)

    records, rows = [], []
    started = time.perf_counter()
    done, total = 0, len(wanted(build(2))) * len(batches) * len(args.threads)
    for n in batches:
        cases = wanted(build(n))
        for t in args.threads:
            row_plan = dataclasses.replace(plan, timer=plan.timer if t == 1 else "wall")
            with Threads(t):
                for case in cases:
                    timings = time_row(case.fns, row_plan)
                    row = table_row(case, t, timings)
                    rows.append(row)
                    done += 1
                    print(f"[{done}/{total}] {case.op} {case.direction} N={n} threads={t}: "
                          f"fastconv {row[5]} ms, numpy {row[6]} ms, torch {row[7]} ms", file=sys.stderr, flush=True)
                    records.append({
                        "op": case.op, "shape": case.shape, "direction": case.direction, "batch": n,
                        "threads": t, "flops": case.flops or None, "bytes": case.bytes or None,
                        "timer": row_plan.timer, "results": timings,
                    })
        del cases  # free this batch's arrays before the next one is built
    header["load_average_end"] = list(os.getloadavg())
    header["wall_s"] = round(time.perf_counter() - started, 1)
    header["plan"] = plan.__dict__
    print_table(rows)
    if args.markdown:
        print()
        print_markdown(rows)
    print(f"\n{len(rows)} rows in {header['wall_s']} s; load average at the end "
          f"{header['load_average_end'][0]:.2f}; JSON: {machine.shown_path(args.out)}")
    with open(args.out, "w") as f:
        json.dump({"header": header, "rows": records}, f, indent=1)


def run_gemm_benchmark(args):
    """Run bench_gemm.py (beside this file, written separately) as a subprocess, if it is there."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_gemm.py")
    if not os.path.exists(script):
        print(f"--gemm: {script} is not in this checkout; skipped", file=sys.stderr)
        return
    cmd = [sys.executable, script, "--threads", *map(str, args.threads)]
    if args.gemm_out:  # else bench_gemm.py's own file for the machine, gemm_<machine>.json
        cmd += ["--out", args.gemm_out]
    if args.quick:
        cmd.append("--quick")
    print(f"\n$ {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=False)


if __name__ == "__main__":
    main()
