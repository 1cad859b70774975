"""torchvision- and timm-format ImageNet files of the paper's backbones load into either backbone kind."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from adafocus import create_backbone

X = torch.randn(2, 3, 64, 64)


def _randomise_bn(m: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
    return m.eval()


def _tv_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.features(x) if hasattr(m, "features") else nn.Sequential(*list(m.children())[:-2])(x)


SOURCES = {
    "timm-mobilenetv2": (lambda: timm.create_model("mobilenetv2_100"), lambda m, x: m.forward_features(x)),
    "tv-mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(), _tv_features),
    "timm-resnet50": (lambda: timm.create_model("resnet50"), lambda m, x: m.forward_features(x)),
    "tv-resnet50": (lambda: torchvision.models.resnet50(), _tv_features),
}
TARGETS = {"mobilenet": ("mobilenet_v2", "timm/mobilenetv2_100"), "resnet": ("resnet50", "timm/resnet50")}


@pytest.mark.parametrize("source", list(SOURCES))
def test_file_loads_into_both_backbone_kinds_with_identical_features(source, tmp_path):
    build, features = SOURCES[source]
    src = _randomise_bn(build())
    path = tmp_path / f"{source}.pth"
    torch.save(src.state_dict(), path)
    with torch.no_grad():
        ref = features(src, X)
        for target in TARGETS["mobilenet" if "mobilenet" in source else "resnet"]:
            net = create_backbone(target, weights=path).eval()
            torch.testing.assert_close(net(X), ref, msg=lambda m, t=target: f"{source} -> {t}: {m}")


def test_timm_file_into_adafocus_global_cnn(tmp_path):
    from adafocus import AdaFocus

    src = _randomise_bn(timm.create_model("mobilenetv2_100"))
    torch.save(src.state_dict(), tmp_path / "mnv2_timm.pth")
    model = AdaFocus(
        num_classes=3,
        global_weights=tmp_path / "mnv2_timm.pth",
        local_backbone="tiny_cnn",
        input_size=64,
        patch_size=32,
        policy_hidden_dim=8,
        classifier_hidden_dim=8,
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.global_cnn(X), src.forward_features(X))


def test_unconvertible_keys_are_named(tmp_path):
    sd = timm.create_model("mobilenetv2_100").state_dict()
    sd["blocks.1.0.conv_extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"cannot place.*blocks\.1\.0\.conv_extra\.weight"):
        create_backbone("mobilenet_v2", weights=sd)
    sd = torchvision.models.resnet50().state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"(?s)bad\.pth.*shape mismatch.*layer1\.0\.conv1\.weight"):
        create_backbone("timm/resnet50", weights=tmp_path / "bad.pth")


def test_timm_own_local_file_mechanism(tmp_path):
    # a ViT saved at another resolution: only timm's checkpoint filter (pos-embed resampling) fits it
    src = timm.create_model("test_vit", img_size=64)
    torch.save(src.state_dict(), tmp_path / "vit64.pth")
    net = create_backbone("timm/test_vit", weights=tmp_path / "vit64.pth")
    assert net.model.pos_embed.shape != src.pos_embed.shape
    torch.testing.assert_close(net.model.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        net.load_file(tmp_path / "absent.pth")
