"""The loader that the pack replaced, kept as the reference that tests/test_pack.py and
bench/pack.py hold the pack to: every image decoded into memory by every job, the training
ones presized, the validation ones cut square."""

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from imgclf.data import Collate, train_transform
from imgclf.preprocess import square


def decoded_in_memory(path: str, size: int, training: bool) -> torch.Tensor:
    with Image.open(path) as image:
        if not training:
            return v2.functional.pil_to_tensor(square(image, size))
        image = image.convert("RGB")
        scale = round(size * 1.25) / min(image.size)
        if scale < 1:
            shape = (round(image.width * scale), round(image.height * scale))
            image = image.resize(shape, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return v2.functional.pil_to_tensor(image)


class InMemoryImages(Dataset):
    def __init__(self, images, targets, transform):
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        return (image if self.transform is None else self.transform(image)), self.targets[index]


def in_memory_loaders(split, classes, size, batch_size, augment, seed, load=decoded_in_memory):
    """The old make_loaders. `load(path, size, training)` gives an image: decoding it, or (a
    bench that times epochs, not decoding) a lookup of one decoded earlier."""
    index = {label: position for position, label in enumerate(classes)}
    datasets = []
    for is_valid in (False, True):
        rows = split[split["is_valid"] == is_valid]
        images = [load(path, size, not is_valid) for path in rows["path"]]
        transform = None if is_valid else train_transform(size, augment)
        datasets.append(InMemoryImages(images, rows["label"].map(index).tolist(), transform))
    train, valid = datasets
    generator = torch.Generator().manual_seed(seed)
    return (
        DataLoader(
            train,
            batch_size,
            shuffle=True,
            drop_last=len(train) > batch_size,
            generator=generator,
            collate_fn=Collate(augment),
        ),
        DataLoader(valid, batch_size, collate_fn=Collate()),
    )
