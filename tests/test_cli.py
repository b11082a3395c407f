"""Tests for the command line: ``python -m fastconv train ...`` and ``python -m fastconv info``,
run in subprocesses as a user would."""
import re
import subprocess
import sys

import pytest

import fastconv


from conftest import SHARED_MNIST as MNIST  # noqa: E402


def run_cli(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastconv", *map(str, args)], cwd=cwd, timeout=timeout,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_train_lenet5_prints_test_accuracy(tmp_path):
    if not MNIST.is_dir():
        pytest.skip(f"real MNIST not found at {MNIST}")
    save = tmp_path / "lenet5.npz"
    result = run_cli("train", "lenet5", "--epochs", "1", "--limit", "2000", "--data-dir", MNIST,
                     "--save", save, "--threads", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2000 training and 10000 test images" in out
    assert "Total params: 60,806" in out
    assert re.search(r"Epoch 1/1 - \d+\.\d\ds", out)
    match = re.search(r"test accuracy: (\d\.\d{4})", out)
    assert match, out
    assert float(match.group(1)) > 0.5
    assert save.exists()
    from fastconv.models import load_model

    assert load_model(save).count_params() == 60_806


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_cli("train", "lenet5", "--data-dir", missing, cwd=tmp_path)
    assert result.returncode == 2
    assert "error: data folder" in result.stderr and str(missing) in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_data_folder(tmp_path):
    result = run_cli("train", "lenet5", "--data-dir", tmp_path, cwd=tmp_path)
    assert result.returncode == 2
    assert "error: mnist not found" in result.stderr and "Traceback" not in result.stderr


def test_bad_arguments(tmp_path):
    result = run_cli("train", "resnet50", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'resnet50'" in result.stderr
    result = run_cli("train", "lenet5", "--limit", "0", "--data-dir", tmp_path, cwd=tmp_path)
    assert result.returncode == 2 and "--limit must be >= 1" in result.stderr


def test_info(tmp_path):
    result = run_cli("info", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"version: {fastconv.__version__}" in result.stdout
    assert "cpu_isa:" in result.stdout and "cuda_available:" in result.stdout


@pytest.mark.slow
def test_train_writes_plots(tmp_path):
    pytest.importorskip("matplotlib", reason="--plots needs matplotlib (pip install fastconv[plot])")
    if not MNIST.is_dir():
        pytest.skip(f"real MNIST not found at {MNIST}")
    plots = tmp_path / "plots"
    result = run_cli("train", "lenet5", "--epochs", "1", "--limit", "500", "--data-dir", MNIST,
                     "--plots", plots, "--threads", "1", "--verbose", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("history.png", "filters.png", "feature_maps.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert len(data) > 2000, name


def test_train_with_augment_puts_a_random_translation_first(tmp_path):
    if not MNIST.is_dir():
        pytest.skip(f"real MNIST not found at {MNIST}")
    result = run_cli("train", "lenet5", "--epochs", "1", "--limit", "512", "--augment", "2",
                     "--data-dir", MNIST, "--threads", "1", "--verbose", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"augment \(RandomTranslation\)\s+\(None, 1, 28, 28\)\s+0", result.stdout)
    assert "Total params: 60,806" in result.stdout
    assert re.search(r"test accuracy: \d\.\d{4}", result.stdout)


@pytest.mark.parametrize("args,message", [
    (["--augment", "-1"], "--augment must be >= 0 pixels, got -1"),
    (["--augment", "28"], "--augment 28: .*height_factor must be a number in"),
    (["--augment", "2", "--device", "cuda"], "--augment: the RandomTranslation layer has no CUDA"),
])
def test_train_augment_errors(tmp_path, args, message):
    result = run_cli("train", "lenet5", "--epochs", "1", "--data-dir", MNIST, *args, cwd=tmp_path)
    assert result.returncode == 2
    assert re.search(message, result.stderr), result.stderr
