"""Tests for the command line: ``fastconv train ...``, ``fastconv info``, ``fastconv --version``
(run as ``python -m fastconv``, the same parser), in subprocesses as a user would run them."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastconv


from conftest import MNIST_DIR as MNIST  # noqa: E402


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
    assert re.search(r"32/32 \[=+\] - \d+s \d+ms/step - loss: \d", out), out  # Keras shows no "Epoch 1/1" for one epoch
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


def test_empty_data_folder_is_not_replaced_by_the_shipped_copy(tmp_path):
    """--data-dir names the folder to read; an empty one is an error, even though MNIST ships
    with fastconv (the library's load_mnist(data_dir) would fall through to it)."""
    result = run_cli("train", "lenet5", "--data-dir", tmp_path, "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "Epoch" not in result.stdout


# ---------------------------------------------------------------------------------------------
# Every argument is checked before training (issue 14, defect 8)

@pytest.mark.parametrize("args,message", [
    (["--save", "/no/such/dir/m.npz"], r"--save: the folder '/no/such/dir' for the model does not exist"),
    (["--save", "{tmp}"], r"--save: '.*' is a folder; give a file name"),
    (["--plots", "{tmp}/file.txt"], r"--plots: '.*file.txt' exists and is not a folder"),
    (["--plots", "{tmp}/file.txt/pics"], r"--plots: .*file.txt' is not a folder"),
    (["--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    (["--batch-size", "-3"], r"--batch-size must be >= 1, got -3"),
    (["--epochs", "-1"], r"--epochs must be >= 0, got -1"),
    (["--lr", "nan"], r"--lr must be a finite number > 0, got nan"),
    (["--lr", "0"], r"--lr must be a finite number > 0, got 0.0"),
    (["--momentum", "1.5"], r"--momentum must be a finite number >= 0 and < 1, got 1.5"),
    (["--lr-decay", "-0.5"], r"--lr-decay must be a finite number > 0"),
    (["--lr-decay", "inf"], r"--lr-decay must be a finite number > 0, got inf"),
    (["--seed", "-1"], r"--seed must be >= 0, got -1"),
    (["--threads", "1000000"], r"--threads must be between 1 and \d+, got 1000000"),
    (["--threads", "0"], r"--threads must be between 1 and \d+, got 0"),
])
def test_bad_arguments_stop_before_training(tmp_path, args, message):
    (tmp_path / "file.txt").write_text("not a folder")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run_cli("train", "lenet5", "--epochs", "1", *args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert re.search("error: " + message, result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert "training and" not in result.stdout and "Epoch" not in result.stdout  # nothing loaded or trained


def test_train_with_no_data_argument_uses_the_shipped_mnist(tmp_path):
    save = tmp_path / "out" / "m.npz"
    save.parent.mkdir()
    result = run_cli("train", "lenet5_modern", "--epochs", "1", "--limit", "256", "--threads", "1",
                     "--verbose", "0", "--save", save, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "mnist: 256 training and 10000 test images" in result.stdout
    assert re.search(r"test accuracy: \d\.\d{4}", result.stdout)
    assert save.is_file()


def test_version_and_usage_name_the_fastconv_command(tmp_path):
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"fastconv {fastconv.__version__}"
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("usage: fastconv ")
    assert "python -m" not in result.stdout
    result = run_cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("usage: fastconv train ")
    text = " ".join(result.stdout.split())
    for default in ("(default: 10)", "(default: mnist)", "(default: 0.9)", "(default: 1, constant)",
                    "(default: cpu)", "(default: 0)", "64 for lenet5", "1e-3 for Adam"):
        assert default in text, default
    # The console script installed beside this Python, where there is one.
    script = Path(sys.executable).with_name("fastconv")
    if script.is_file():
        result = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0 and result.stdout.strip() == f"fastconv {fastconv.__version__}"


def test_importing_from_the_source_tree_says_what_to_do():
    """In the repository root, `import fastconv` finds the sources (no compiled _core): the
    error says so and what to do, instead of a circular-import message."""
    root = Path(__file__).resolve().parents[1]
    sources = root / "fastconv"
    if not (sources / "__init__.py").is_file() or any(p.name.startswith("_core") for p in sources.iterdir()):
        pytest.skip("no source tree without a compiled _core beside the tests")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", "import fastconv"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "ImportError: fastconv was imported from" in result.stderr
    assert "without its compiled extension" in result.stderr and "pip install ." in result.stderr
    assert "circular import" not in result.stderr
