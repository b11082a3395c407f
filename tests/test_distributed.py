"""fastconv.distributed: sharding, the gradient weighting, and whole runs under mpiexec.

The sharding and weighting tests are pure Python (no MPI). The rest launch `mpiexec -n 2` on
loopback as a subprocess (tests/mpi_worker.py is one rank) and skip, saying why, where mpi4py
or mpiexec is missing (pip install "fastconv[mpi]" brings both).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv import distributed as dist
from fastconv import layers as L

from conftest import MNIST_DIR

WORKER = Path(__file__).resolve().parent / "mpi_worker.py"


# --------------------------------------------------------------------------------------------
# Sharding: pure Python
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("count", [0, 1, 2, 5, 13, 64, 101])
def test_shard_bounds_partition_the_batch_evenly(count, size):
    bounds = [dist.shard_bounds(count, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    for (lo, hi), (lo2, _) in zip(bounds, bounds[1:]):
        assert hi == lo2  # consecutive ranks, consecutive ranges
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and sorted(sizes, reverse=True) == sizes


def test_shard_bounds_refuse_bad_ranks():
    with pytest.raises(ValueError, match="rank"):
        dist.shard_bounds(10, 2, 2)
    with pytest.raises(ValueError, match="rank"):
        dist.shard_bounds(10, 0, 0)
    with pytest.raises(ValueError, match="count"):
        dist.shard_bounds(-1, 0, 2)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_sampler_shards_one_permutation_over_the_ranks(size):
    n, batch = 103, 10
    samplers = [dist.ShardedSampler(n, batch, rank=r, size=size, seed=5) for r in range(size)]
    assert {len(s) for s in samplers} == {11}
    for epoch in range(3):
        perm = samplers[0].permutation(epoch)
        for s in samplers[1:]:
            np.testing.assert_array_equal(s.permutation(epoch), perm)  # same on every rank
        assert sorted(perm.tolist()) == list(range(n))
        per_rank = [list(s.batches(epoch)) for s in samplers]
        assert all(len(b) == 11 for b in per_rank)
        seen = []
        for step in range(11):
            counts = {g for _, g in (b[step] for b in per_rank)}
            assert counts == {min(batch, n - step * batch)}
            whole = np.concatenate([b[step][0] for b in per_rank])
            np.testing.assert_array_equal(whole, perm[step * batch:(step + 1) * batch])
            seen.extend(whole.tolist())
        assert sorted(seen) == list(range(n))  # every sample once an epoch
    assert not np.array_equal(samplers[0].permutation(0), samplers[0].permutation(1))
    assert not np.array_equal(samplers[0].permutation(0),
                              dist.ShardedSampler(n, batch, seed=6).permutation(0))


def test_sampler_without_shuffle_and_bad_arguments():
    s = dist.ShardedSampler(7, 4, rank=1, size=2, shuffle=False)
    assert [(idx.tolist(), g) for idx, g in s.batches(0)] == [([2, 3], 4), ([6], 3)]
    for kwargs, what in (({"num_samples": 0, "batch_size": 4}, "num_samples"),
                         ({"num_samples": 5, "batch_size": 0}, "batch_size"),
                         ({"num_samples": 5, "batch_size": 2, "rank": 3, "size": 2}, "rank")):
        with pytest.raises(ValueError, match=what):
            dist.ShardedSampler(**kwargs)


@pytest.mark.parametrize("batch, size", [(10, 2), (9, 2), (7, 3), (2, 3), (1, 2)])
def test_weighted_shard_gradients_sum_to_the_whole_batch_gradient(batch, size):
    """sum_r (n_r / B) grad(mean loss over shard r) == grad(mean loss over the whole batch),
    including odd B and ranks with an empty shard (B < N): the rule allreduce_gradients uses."""
    rng = np.random.default_rng(batch * 10 + size)
    net = fastconv.Sequential([L.Conv2D(3, 3, padding=1, activation="tanh"), L.AvgPool2D(2),
                               L.Flatten(), L.Dense(4)], input_shape=(1, 6, 6), seed=3)
    net.compile("sgd", "sparse_categorical_crossentropy")
    x = rng.standard_normal((batch, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 4, batch)
    _, whole = net.compute_gradients(x, y)
    total = [np.zeros(g.shape, np.float64) for g in whole]
    for r in range(size):
        lo, hi = dist.shard_bounds(batch, r, size)
        if hi == lo:
            continue  # an empty shard adds zeros
        _, grads = net.compute_gradients(x[lo:hi], y[lo:hi])
        for t, g in zip(total, grads):
            t += (hi - lo) / batch * g.astype(np.float64)
    for t, g in zip(total, whole):
        np.testing.assert_allclose(t, g, rtol=1e-5, atol=1e-6)
        assert np.abs(g).max() > 0  # the check compares real gradients


# --------------------------------------------------------------------------------------------
# Without mpi4py: the message says how to install it
# --------------------------------------------------------------------------------------------
@pytest.fixture
def no_mpi4py(monkeypatch):
    if dist.is_initialized():
        pytest.skip("MPI is already initialised in this process")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # `from mpi4py import MPI` raises
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)


def test_fit_distributed_without_mpi4py_says_how_to_install(no_mpi4py):
    net = fastconv.Sequential([L.Flatten(), L.Dense(2)], input_shape=(1, 2, 2), seed=0)
    net.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((4, 1, 2, 2), np.float32), np.array([0, 1, 0, 1])
    with pytest.raises(dist.MPIUnavailableError, match=r'pip install "fastconv\[mpi\]"'):
        net.fit(x, y, epochs=1, verbose=0, distributed=True)
    assert not dist.available() and 'fastconv[mpi]' in dist.why_unavailable()
    assert isinstance(dist.MPIUnavailableError("x"), ImportError)


def test_cli_distributed_without_mpi4py_says_how_to_install(no_mpi4py, tmp_path, capsys):
    from fastconv import train

    status = train.main(["train", "lenet5", "--distributed", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: --distributed:") and 'pip install "fastconv[mpi]"' in err


def test_data_parallel_checks_its_arguments():
    # Pure argument checks that need no communicator.
    with pytest.raises(TypeError, match="grad_buffers"):
        dist.DataParallel._check_buffer([1.0], "grad_buffers")
    with pytest.raises(ValueError, match="C-contiguous"):
        dist.DataParallel._check_buffer(np.zeros((4, 4), np.float32)[:, ::2], "grad_buffers")
    with pytest.raises(ValueError, match="float32"):
        dist.DataParallel._check_buffer(np.zeros(4, np.int64), "param_buffers")


# --------------------------------------------------------------------------------------------
# Under mpiexec
# --------------------------------------------------------------------------------------------
def _mpiexec():
    """The mpiexec beside this Python (the MPICH or Open MPI wheel's), else the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _skip_reason():
    if not dist.available():
        return f"no MPI here: {dist.why_unavailable()}"
    if _mpiexec() is None:
        return 'no mpiexec on PATH or beside python; pip install "fastconv[mpi]"'
    return None


needs_mpi = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _launch(*programs, timeout=120, env=None, cwd=None):
    """Run ``mpiexec -n 1 prog : -n 1 prog ...`` (one rank per program) or ``-n 2 prog`` for one;
    returns (CompletedProcess, seconds). cwd: where the ranks start (outside the source tree, so
    that ``python -m fastconv`` imports the installed package)."""
    exe = _mpiexec()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    cmd = [exe]
    if "Open MPI" in version or "OpenRTE" in version:
        cmd += ["--oversubscribe"]
    full_env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                    **(env or {}))
    full_env.pop("OMP_NUM_THREADS", None)
    if len(programs) == 1:
        cmd += ["-n", "2"] + list(programs[0])
    else:
        for i, prog in enumerate(programs):
            cmd += ([":"] if i else []) + ["-n", "1"] + list(prog)
    start = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                            cwd=cwd)
    return result, time.monotonic() - start


def _worker(out, *args):
    return [sys.executable, str(WORKER), str(out), *args]


@needs_mpi
def test_two_ranks_follow_the_single_process_loss_curve(tmp_path):
    """Global batch 25 over 2 ranks (13 + 12; the last batch of 1 leaves rank 1 empty) against
    one process with batch 25: the same losses, accuracies and weights to float tolerance."""
    single = subprocess.run(_worker(tmp_path / "single.json"), capture_output=True, text=True,
                            timeout=120)
    assert single.returncode == 0, single.stderr
    result, _ = _launch(_worker(tmp_path / "multi.json", "--distributed"))
    assert result.returncode == 0, result.stdout + result.stderr
    ref = json.loads((tmp_path / "single.json").read_text())
    ranks = [json.loads((tmp_path / f"multi.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["threads"] for r in ranks] == [max(1, len(os.sched_getaffinity(0)) // 2)] * 2
    for r in ranks:
        assert set(r["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        for key, values in ref["history"].items():
            np.testing.assert_allclose(r["history"][key], values, rtol=2e-5, atol=1e-6,
                                       err_msg=key)
        np.testing.assert_allclose(r["weights"], ref["weights"], rtol=1e-4, atol=2e-5)
    assert ranks[0]["weights"] == ranks[1]["weights"]  # the ranks hold bit-identical weights
    losses = ref["history"]["loss"]
    assert losses[-1] < losses[0]  # it trained: the curve is a real one


@needs_mpi
def test_ranks_launched_with_different_seeds_fail_at_start(tmp_path):
    result, _ = _launch(_worker(tmp_path / "a.json", "--distributed", "--seed", "7"),
                        _worker(tmp_path / "a.json", "--distributed", "--seed", "8"))
    assert result.returncode != 0
    assert "the ranks were launched differently" in result.stderr
    assert "seed: rank 0 has 7, rank 1 has 8" in result.stderr
    assert not list(tmp_path.glob("a.rank*.json"))  # no rank trained


@needs_mpi
def test_ranks_launched_with_different_models_fail_at_start(tmp_path):
    # One rank runs a different program's model: a Dense-only net with other parameters.
    other = tmp_path / "other.py"
    other.write_text(
        "import sys, numpy as np, fastconv\n"
        "from fastconv import layers as L\n"
        f"sys.path.insert(0, {str(WORKER.parent)!r})\n"
        "import mpi_worker as w\n"
        "net = fastconv.Sequential([L.Flatten(), L.Dense(5)], input_shape=(2, 9, 9), seed=7)\n"
        "net.compile('adam', 'sparse_categorical_crossentropy', ['accuracy'])\n"
        "x, y, _, _ = w.data()\n"
        "try:\n"
        "    net.fit(x, y, epochs=3, batch_size=25, verbose=0, distributed=True)\n"
        "except fastconv.distributed.DistributedError as err:\n"
        "    print('error:', err, file=sys.stderr); sys.exit(2)\n")
    result, _ = _launch(_worker(tmp_path / "a.json", "--distributed"),
                        [sys.executable, str(other)])
    assert result.returncode != 0
    assert "parameters: rank 0 has" in result.stderr and \
        "architecture: rank 0 has 'sha256:" in result.stderr


@needs_mpi
@pytest.mark.parametrize("fault", ["die", "hang", "raise"])
def test_a_failed_rank_ends_the_job_instead_of_hanging(tmp_path, fault):
    """Rank 1 is SIGKILLed, hangs, or raises at its third step: the job exits non-zero well
    before the test's own limit (the hang by the watchdog's 3 s timeout)."""
    timeout = "3" if fault == "hang" else "100"
    result, seconds = _launch(_worker(tmp_path / "f.json", "--distributed", "--fault", fault),
                              timeout=90, env={"FASTCONV_DIST_TIMEOUT": timeout})
    assert result.returncode != 0, result.stdout + result.stderr
    assert seconds < 60
    assert not list(tmp_path.glob("f.rank*.json"))
    if fault == "hang":
        assert "did not complete within 3 s" in result.stderr and "aborting the job" in result.stderr
    if fault == "raise":
        assert "a deliberate failure on rank 1" in result.stderr
        assert "uncaught RuntimeError" in result.stderr


@needs_mpi
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST not found at {MNIST_DIR}")
def test_cli_distributed_trains_and_only_rank0_prints_and_saves(tmp_path):
    cli = [sys.executable, "-m", "fastconv", "train", "lenet5", "--epochs", "1", "--limit", "600",
           "--data-dir", str(MNIST_DIR), "--verbose", "2", "--distributed"]
    result, _ = _launch(cli + ["--save", str(tmp_path / "m.npz")], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("test accuracy:") == 1
    assert result.stdout.count("10/10 - ") == 1    # verbose 2: one line for the epoch's 10 steps
    assert "2 MPI ranks" in result.stdout
    accuracy = float(result.stdout.split("test accuracy:")[1].split()[0])
    assert accuracy > 0.5  # 600 images, one epoch: well above chance
    assert (tmp_path / "m.npz").exists()
    bad, _ = _launch(cli + ["--seed", "1"], cli + ["--seed", "2"], cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.count("error: the ranks were launched differently") == 1
    assert "seed: rank 0 has 1, rank 1 has 2" in bad.stderr


# --------------------------------------------------------------------------------------------
# The NCCL path's plumbing (no GPU here: a stand-in library records the calls)
# --------------------------------------------------------------------------------------------
def test_nccl_without_its_library_says_how_to_install(monkeypatch):
    import ctypes.util

    if ctypes.util.find_library("nccl"):
        pytest.skip("a libnccl is installed here")
    monkeypatch.delenv("FASTCONV_NCCL_LIBRARY", raising=False)
    with pytest.raises(dist.DistributedError, match="nvidia-nccl-cu13"):
        dist._load_nccl("/nonexistent/libnccl.so.2")


class _FakeNccl:
    """Records NCCL calls; ncclRedOpCreatePreMulSum hands out ops 100, 101, ..."""

    def __init__(self):
        self.calls, self.next_op = [], 100
        self.unique_id = bytes([7, 0, 9] + [0] * 60 + [5] * 65)
        self.ncclGetErrorString = lambda code: b"fake error"

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, args))
            if name == "ncclGetUniqueId":  # an id with zero bytes inside, as real ones have
                ctypes.memmove(args[0], self.unique_id, 128)
            if name == "ncclCommInitRank":
                args[0]._obj.value = 0x5EED
            if name == "ncclRedOpCreatePreMulSum":
                args[0]._obj.value = self.next_op
                self.next_op += 1
            return 0
        return call


class _FakeTensor:
    device, dtype, data_ptr, size = "cuda", np.dtype(np.float32), 0xABC000, 870_634


class _FakeDP:
    rank, size = 0, 2

    def __init__(self):
        from contextlib import nullcontext
        self.watchdog = type("W", (), {"collective": staticmethod(lambda what: nullcontext())})()

    def broadcast_object(self, obj, what="", root=0):
        return obj


def test_nccl_allreduce_plumbing(monkeypatch):
    fake = _FakeNccl()
    monkeypatch.setattr(dist, "_load_nccl", lambda library=None: fake)
    nccl = dist.NcclAllReduce(_FakeDP())
    names = [name for name, _ in fake.calls]
    assert names == ["ncclGetUniqueId", "ncclCommInitRank"]
    _, nranks, unique_id, rank = fake.calls[1][1]
    assert (nranks, rank) == (2, 0) and bytes(unique_id) == fake.unique_id  # all 128 bytes
    nccl.allreduce(_FakeTensor())                 # weight 1: a plain ncclSum (0)
    nccl.allreduce(_FakeTensor(), 13 / 25)        # a pre-multiplied sum, made once
    nccl.allreduce(_FakeTensor(), 13 / 25)
    reduces = [args for name, args in fake.calls if name == "ncclAllReduce"]
    assert [a[4] for a in reduces] == [0, 100, 100]
    assert all(a[0].value == 0xABC000 and a[1].value == 0xABC000 and a[2].value == 870_634
               and a[3] == 7 for a in reduces)  # in place, the count, ncclFloat32
    assert [name for name, _ in fake.calls].count("ncclRedOpCreatePreMulSum") == 1
    nccl.broadcast(_FakeTensor())
    assert fake.calls[-1][0] == "ncclBroadcast" and fake.calls[-1][1][4] == 0
    with pytest.raises(TypeError, match="float32 fastconv.cuda.Tensor"):
        nccl.allreduce(np.zeros(4, np.float32))
    nccl.close()
    assert [(name, args[-1].value) for name, args in fake.calls[-2:]] == \
        [("ncclRedOpDestroy", 0x5EED), ("ncclCommDestroy", 0x5EED)]
    nccl.close()  # a second close does nothing
    assert len([name for name, _ in fake.calls if name == "ncclCommDestroy"]) == 1


def test_every_public_name_has_a_docstring():
    for name in dist.__all__:
        obj = getattr(dist, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), name
        if isinstance(obj, type):
            for attr, value in vars(obj).items():
                if not attr.startswith("_") and callable(value):
                    assert (value.__doc__ or "").strip(), f"{name}.{attr}"
