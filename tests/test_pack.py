"""The pack: decoded once, read through a memory map, with the results of decoding in memory."""

import gc
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save

from bench.in_memory import decoded_in_memory, in_memory_loaders
from imgclf.data import Augment, make_loaders
from imgclf.demo import write_digits
from imgclf.files import DamagedFile
from imgclf.models import build_model, freeze_body
from imgclf.pack import Pack, PackError, presized_side, write_pack
from imgclf.sources import list_images
from imgclf.split import split_images
from imgclf.train import OneCycleSettings, fit_one_cycle, seed_everything

from . import images

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared/datasets/hymenoptera"
AUGMENT = Augment(flip=True, max_rotate=10, max_zoom=1.1, min_scale=0.5, max_lighting=0.2)


def packed(tmp_path: Path, paths: list[str], ids: list[str], size: int) -> Pack:
    files = (str(tmp_path / "images.u8"), str(tmp_path / "index.npz"))
    write_pack(paths, ids, size, *files, threads=2)
    return Pack(*files)


def test_each_image_is_packed_as_decoding_its_file_gives_it(tmp_path):
    shapes = [(64, 48), (48, 64), (30, 20), (200, 41), (40, 40)]  # some smaller than presized
    paths = []
    for seed, shape in enumerate(shapes):
        paths.append(str(tmp_path / f"{seed}.png"))
        Path(paths[-1]).write_bytes(images.png(seed, shape))
    pack = packed(tmp_path, paths, [f"id{seed}" for seed in range(len(paths))], size=32)
    assert pack.size == 32 and presized_side(32) == 40
    for position, path in enumerate(paths):
        assert torch.equal(pack.presized(position), decoded_in_memory(path, 32, training=True))
        assert torch.equal(pack.square(position), decoded_in_memory(path, 32, training=False))
    assert list(pack.positions(["id3", "id0"])) == [3, 0]
    with pytest.raises(PackError, match="1 images of the split are not in the pack.*idX"):
        pack.positions(["id1", "idX"])


def test_a_damaged_pack_or_image_is_named_with_the_rule_that_rebuilds_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("results/verify/images")
    folder.mkdir(parents=True)
    paths = [str(folder / f"{seed}.png") for seed in range(3)]
    for seed, path in enumerate(paths):
        Path(path).write_bytes(images.png(seed, (64, 48)))
    files = ("results/pack/32/images.u8", "results/pack/32/index.npz")
    write_pack(paths, ["a", "b", "c"], 32, *files, threads=2)
    whole = Path(files[0]).read_bytes()
    Path(files[0]).write_bytes(whole[:-10])
    with pytest.raises(DamagedFile, match=r"images.u8 is damaged .* --forcerun pack$"):
        Pack(*files)
    Path(paths[1]).write_bytes(images.png(1, (64, 48))[:200])
    with pytest.raises(DamagedFile, match=rf"^{paths[1]} is damaged .* --forcerun verify$"):
        write_pack(paths, ["a", "b", "c"], 32, *files, threads=2)
    assert Path(files[0]).read_bytes() == whole[:-10], "a failed pack replaced the old one"


def test_an_empty_manifest_gives_an_empty_pack(tmp_path):
    pack = packed(tmp_path, [], [], size=32)
    assert len(pack.ids) == 0 and len(pack.squares(pack.positions([]))) == 0


def digits_split(folder: Path, per_class: int) -> tuple[pd.DataFrame, list[str]]:
    write_digits(folder)
    classes = ["zero", "one", "two"]
    rows = [
        {"id": f"{label}{Path(path).stem}", "path": path, "label": label, "source": path}
        for label in classes
        for path in list_images(folder / label)[:per_class]
    ]
    return split_images(pd.DataFrame(rows), 0.2, seed=0), classes


def photos_split(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    if not HYMENOPTERA.exists():
        pytest.skip(f"the shared photo set is not at {HYMENOPTERA}")
    rows = [
        {"id": re.sub(r"\W", "_", path), "path": path, "label": label, "source": path}
        for label in ("ants", "bees")
        for path in list_images(HYMENOPTERA, r"(ants|bees)/", label)
    ]
    return split_images(pd.DataFrame(rows), 0.2, seed=0, valid_folder="val"), ["ants", "bees"]


def weights_bytes(model) -> bytes:
    return save({name: tensor.contiguous() for name, tensor in model.state_dict().items()})


@pytest.mark.parametrize("data, size", [("digits", 32), ("photos", 64)])
def test_training_from_the_pack_gives_the_batches_and_weights_of_decoding_in_memory(
    tmp_path, data, size
):
    if data == "digits":
        split, classes = digits_split(tmp_path / "digits", per_class=60)
    else:
        split, classes = photos_split(tmp_path)
    pack = packed(tmp_path, split["path"].tolist(), split["id"].tolist(), size)
    results = []
    for make in (
        lambda: make_loaders(split, classes, pack, 16, AUGMENT, seed=3),
        lambda: in_memory_loaders(split, classes, size, 16, AUGMENT, seed=3),
    ):
        seed_everything(3)
        train, valid = make()
        batches = [images for images, _ in train] + [images for images, _ in valid]
        seed_everything(3)
        model = build_model("efficientnet_lite0", len(classes), pretrained=True)
        freeze_body(model)
        settings = OneCycleSettings(1, 25, 0.3, [0.95, 0.85], 0.01)
        history, _ = fit_one_cycle(
            model, train, valid, [3e-3] * 3, settings, "stage1", torch.device("cpu")
        )
        results.append((batches, weights_bytes(model), history.drop(columns="seconds")))
    (pack_batches, pack_weights, pack_history), (batches, weights, history) = results
    assert len(pack_batches) == len(batches) > 2
    assert all(torch.equal(a, b) for a, b in zip(pack_batches, batches, strict=True))
    assert pack_weights == weights
    pd.testing.assert_frame_equal(pack_history, history)


def anonymous_memory() -> int:
    """Bytes of this process's memory that no file backs (RssAnon): what the pages of a
    memory-mapped file, which the page cache holds and can drop, do not count in."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"RssAnon:\s+(\d+) kB", status)[1]) * 1024


def memory_after_an_epoch(split, classes, pack) -> int:
    """Anonymous memory at the end of an epoch, its loaders still open."""
    train, valid = make_loaders(split, classes, pack, 32, AUGMENT, seed=0)
    for _ in train:
        pass
    for _ in valid:
        pass
    gc.collect()
    return anonymous_memory()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_an_epoch_holds_under_a_kilobyte_of_anonymous_memory_per_image(tmp_path):
    """Decoded in memory, these images took 6.8 KB each."""
    count, classes = 3000, ["a", "b"]
    paths = []
    for index in range(count):
        paths.append(str(tmp_path / f"{index}.png"))
        images.noise((48, 40), seed=index).save(paths[-1])
    ids = [f"{index:05d}" for index in range(count)]
    labels = [classes[index % 2] for index in range(count)]
    split = split_images(pd.DataFrame({"id": ids, "path": paths, "label": labels}), 0.2, 0)
    pack = packed(tmp_path, paths, ids, size=32)
    before = memory_after_an_epoch(split.head(200), classes, pack)  # the allocator's pools
    grown = memory_after_an_epoch(split, classes, pack) - before
    assert grown / count < 1024, f"{grown / count:.0f} bytes an image"
