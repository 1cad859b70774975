import pytest
import torch

from adafocus import AdaFocus, create_backbone, list_backbones


@pytest.mark.parametrize("name", ["tiny_cnn", "timm/test_resnet", "timm/test_efficientnet", "torchvision/resnet18"])
def test_backbone_feature_api(name):
    net = create_backbone(name).eval()
    fmap = net(torch.randn(2, 3, 64, 64))
    assert fmap.dim() == 4 and fmap.shape[:2] == (2, net.num_features)


def test_registry_lists_paper_backbones():
    assert {"mobilenet_v2", "resnet50", "tiny_cnn"} <= set(list_backbones())


def test_weights_from_local_file_and_state_dict(tmp_path):
    src = create_backbone("timm/test_resnet").eval()
    path = tmp_path / "w.pth"
    torch.save(src.model.state_dict(), path)
    x = torch.randn(1, 3, 64, 64)
    for weights in (path, str(path), src.model.state_dict()):
        dst = create_backbone("timm/test_resnet", weights=weights).eval()
        torch.testing.assert_close(dst(x), src(x))


def test_torchvision_weights_with_head_load(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18().eval()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = create_backbone("torchvision/resnet18", weights=tmp_path / "r18.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    feats = torch.nn.Sequential(*list(ref.children())[:-2])(x)
    torch.testing.assert_close(net(x), feats)


def test_weight_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_backbone("tiny_cnn", weights=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="never downloads"):
        create_backbone("resnet50", weights="hub")
    bad = create_backbone("tiny_cnn").state_dict()
    bad["features.0.weight"] = torch.zeros(1)
    del bad["features.1.bias"]
    with pytest.raises(ValueError, match=r"(?s)missing.*features.1.bias.*shape mismatch.*features.0.weight"):
        create_backbone("tiny_cnn", weights=bad)
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("resnet9000")


def test_model_takes_backbone_weights():
    g = create_backbone("tiny_cnn").state_dict()
    model = AdaFocus(
        num_classes=3,
        global_backbone="tiny_cnn",
        local_backbone="tiny_cnn",
        global_weights=g,
        input_size=64,
        patch_size=32,
        policy_hidden_dim=16,
        classifier_hidden_dim=16,
    )
    for k, v in g.items():
        torch.testing.assert_close(model.global_cnn.state_dict()[k], v)
