"""Tests for the named training recipes (fastconv.presets) and ``fastconv train --preset``: the
arguments parse, the preset builds the model and optimiser it documents, options it chooses
itself are refused with a message naming them, and a tiny run goes through the command line.
Whether the recipe reaches 99% is measured by benchmarks/time_to_accuracy.py, not here."""
import math
import subprocess
import sys

import numpy as np
import pytest

from fastconv import layers as L
from fastconv import optimizers, presets, schedules
from fastconv.train import CLIError, build_parser, check_train_args, resolve_preset


def parse(*argv):
    return build_parser().parse_args(["train", *argv])


def test_mnist99_arguments_parse_to_the_recipe():
    args = parse("--preset", "mnist99", "--seed", "3", "--threads", "1")
    preset = resolve_preset(args)
    assert preset is presets.get("mnist99")
    assert (args.dataset, args.epochs, args.batch_size, args.optimizer, args.lr) == ("mnist", 2, 64, "adam", 1e-2)
    assert (args.lr_decay, args.augment, args.seed, args.threads) == (1.0, 0, 3, 1)
    check_train_args(args)  # the usual checks pass on what the preset filled in
    assert resolve_preset(args) is preset  # a second call (train() makes one) changes nothing


def test_mnist99_builds_lenet5_bn():
    model = presets.get("mnist99").build_model(seed=0)
    assert model.name == "lenet5_bn"
    kinds = [type(layer) for layer in model.layers]
    assert kinds == [L.Conv2D, L.BatchNormalization, L.ReLU, L.MaxPool2D,
                     L.Conv2D, L.BatchNormalization, L.ReLU, L.MaxPool2D,
                     L.Flatten, L.Dense, L.Dense, L.Dense]
    conv1, conv3 = model.layers[0], model.layers[4]
    assert conv1.kernel.shape == (6, 1, 5, 5) and conv1.bias is None
    assert conv3.kernel.shape == (16, 6, 5, 5) and conv3.bias is None
    # 150 + 24 (C1 and its normalisation) + 2400 + 64 + 30840 + 10164 + 850
    assert model.count_params() == 44_492
    y = model.predict(np.zeros((3, 1, 28, 28), np.float32))
    assert y.shape == (3, 10) and np.all(np.isfinite(y))
    # The same seed builds the same weights, another seed others.
    again, other = (presets.get("mnist99").build_model(seed=s) for s in (0, 1))
    assert np.array_equal(again.layers[0].kernel, conv1.kernel)
    assert not np.array_equal(other.layers[0].kernel, conv1.kernel)


def test_mnist99_optimizer_is_adam_under_one_cycle_sized_to_the_data():
    preset = presets.get("mnist99")
    optimizer = preset.optimizer(60_000)
    assert isinstance(optimizer, optimizers.Adam)
    assert optimizer.learning_rate == pytest.approx(1e-2 / 25)   # the rate of step 0
    schedule = optimizer.get_config()["learning_rate"]
    schedule = schedules.deserialize(schedule) if isinstance(schedule, dict) else schedule
    assert isinstance(schedule, schedules.OneCycle)
    steps = 2 * math.ceil(60_000 / 64)
    assert schedule.total_steps == steps == 1876
    assert schedule(0) == pytest.approx(1e-2 / 25)
    assert schedule(0.25 * steps - 1) == pytest.approx(1e-2)
    assert schedule(steps - 1) == pytest.approx(1e-2 / 25 / 1e4)
    assert preset.schedule(256).total_steps == 2 * 4  # --limit 256: 4 steps an epoch


@pytest.mark.parametrize("argv,message", [
    (["lenet5", "--preset", "mnist99"], "trains its own model (lenet5_bn); leave the model argument 'lenet5' out"),
    (["--preset", "mnist99", "--epochs", "3"], "chooses --epochs itself"),
    (["--preset", "mnist99", "--batch-size", "32", "--lr", "0.1"], "chooses --batch-size, --lr itself"),
    (["--preset", "mnist99", "--augment", "0"], "chooses --augment itself"),
    (["--preset", "mnist99", "--dataset", "fashion-mnist"], "chooses --dataset itself"),
    ([], "give a model (lenet5, lenet5_modern, vgg_small, resnet_small, denoise, dcgan) or --preset (mnist99)"),
])
def test_options_the_preset_chooses_are_refused(argv, message):
    with pytest.raises(CLIError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_train_args(parse(*argv))


def test_unknown_preset_is_refused(tmp_path):   # run from elsewhere: the installed fastconv
    with pytest.raises(ValueError, match="unknown preset 'mnist100'; the presets are: mnist99"):
        presets.get("mnist100")
    result = subprocess.run([sys.executable, "-m", "fastconv", "train", "--preset", "mnist100"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'mnist100'" in result.stderr


def test_without_a_preset_the_plain_defaults_apply():
    args = parse("lenet5")
    assert resolve_preset(args) is None
    assert (args.dataset, args.epochs, args.lr_decay, args.augment) == ("mnist", 10, 1.0, 0)


def test_preset_trains_through_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastconv", "train", "--preset", "mnist99",
                             "--limit", "256", "--threads", "1", "--verbose", "2"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "mnist: 256 training and 10000 test images" in out
    assert 'Model: "lenet5_bn"' in out and "Total params: 44,492" in out
    assert "preset mnist99: MNIST to about 99% test accuracy in 2 epochs" in out
    assert "batch size 64" in out and "Epoch 2/2" in out and "Epoch 3/" not in out
    assert "test accuracy:" in out
