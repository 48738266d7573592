"""Export: the ONNX file gives torch's probabilities, for the largest offline body too (the
workflow's runs export efficientnet_lite0 and, in the experiments, efficientnet_lite1)."""

import torch

from imgclf.export import check_onnx, to_onnx
from imgclf.models import build_model


def test_efficientnet_lite2_exports_to_onnx_with_torchs_probabilities():
    model = build_model("efficientnet_lite2", 4, pretrained=True).eval()
    model.averages_mirror = True
    onnx, wrapper = to_onnx(model, 64)
    images = torch.randint(0, 256, (3, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    assert check_onnx(onnx, wrapper, images.to(torch.uint8)) < 1e-4
