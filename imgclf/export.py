"""export: the chosen model as ONNX, loadable without this project and without pickle.

The ONNX graph takes uint8 RGB images (N, 3, size, size) and returns class probabilities;
normalisation is inside it. model.json says how to make its input from an image file
(preprocess.PREPARE), the classes, and where the model came from.
"""

import logging
import platform
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
import onnxruntime
import torch
from torch import nn

from .files import file_sha256
from .job import ChosenModel, Job
from .models import IMAGENET_MEAN, IMAGENET_STD
from .preprocess import PREPARE
from .split import read_split

log = logging.getLogger(__name__)
logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # a line per merged constant otherwise

TOLERANCE = 1e-4  # largest difference allowed between ONNX Runtime's and torch's probabilities
CHECK_IMAGES = 32
PACKAGES = ["imgclf", "torch", "torchvision", "timm", "onnx", "onnxscript", "onnxruntime"]


class ExportError(RuntimeError):
    pass


class Exported(nn.Module):
    """uint8 images (N, 3, size, size) in, class probabilities out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images.float() - self.mean) / self.std).softmax(1)


def to_onnx(model: nn.Module, size: int) -> tuple[bytes, Exported]:
    """The model, wrapped as Exported, as an ONNX file's bytes; and the wrapper (in eval mode)."""
    wrapper = Exported(model).eval()
    example = torch.zeros(2, 3, size, size, dtype=torch.uint8)
    program = torch.onnx.export(
        wrapper,
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["probabilities"],
        dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
    )
    return program.model_proto.SerializeToString(), wrapper


def check_onnx(onnx: bytes, wrapper: Exported, images: torch.Tensor) -> float:
    """The largest difference between ONNX Runtime's and torch's probabilities on `images`."""
    session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    exported = session.run(None, {"images": images.numpy()})[0]
    with torch.no_grad():
        expected = wrapper(images).numpy()
    difference = float(np.abs(exported - expected).max())
    if difference > TOLERANCE:
        raise ExportError(
            f"ONNX Runtime's probabilities differ from torch's by {difference:.2e} "
            f"(allowed: {TOLERANCE:.0e}); the exported model is not the trained one"
        )
    return difference


@dataclass
class ExportedModel:
    """The ONNX file's bytes, checked against torch, and the model.json to write beside it."""

    onnx: bytes
    meta: dict


def export_model(job: Job, chosen: ChosenModel, onnx_name: str, max_pixels: int) -> ExportedModel:
    """The chosen stage as ONNX (to be saved as `onnx_name`), checked with ONNX Runtime.
    `max_pixels` (verify's) goes into model.json: predict refuses larger images too."""
    job.setup()
    model = job.build(chosen.weights).eval()
    size = job.model.image_size
    onnx, wrapper = to_onnx(model, size)
    valid = read_split(job.split).query("is_valid").head(CHECK_IMAGES)
    pack = job.open_pack()
    images = pack.squares(pack.positions(valid["id"]))[:]
    difference = check_onnx(onnx, wrapper, torch.stack(images))
    log.info(
        "ONNX Runtime matches torch within %.1e on %d validation images", difference, len(images)
    )
    meta = {
        "format": "onnx",
        "file": onnx_name,
        "input": {
            "name": "images",
            "dtype": "uint8",
            "shape": ["batch", 3, size, size],
            "layout": "RGB, channels first, 0-255",
        },
        "output": {
            "name": "probabilities",
            "shape": ["batch", len(job.classes)],
            # A model trained on mirrored images averages the image's and its mirror's.
            "averages_mirror": model.averages_mirror,
        },
        "classes": job.classes,
        "image_size": size,
        "max_pixels": max_pixels,
        "preprocess": PREPARE,
        "normalisation": {
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "applied": "inside the model, to pixels / 255",
        },
        "arch": chosen.meta["arch"],
        "stage": chosen.stage,
        "stage_reason": chosen.reason,
        "metrics": chosen.meta["metrics"],
        "config": chosen.meta["config"],
        "split_sha256": file_sha256(job.split),
        "versions": {
            "python": platform.python_version(),
            **{package: version(package) for package in PACKAGES},
        },
    }
    return ExportedModel(onnx, meta)
