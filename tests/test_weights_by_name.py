"""Backbone weights by name (torchvision's ``IMAGENET1K_V1`` / ``DEFAULT``, timm's ``pretrained`` / tags),
loaded through the libraries' own caches. Every test runs offline: the caches are temporary folders the
test seeds with files of randomly initialised models, and any download or socket connection raises."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torchvision

from adafocus import AdaFocus, create_backbone
from adafocus.errors import CheckpointNotFoundError
from adafocus.models.backbones.torchvision import torchvision_cache_file


class NetworkUsed(AssertionError):
    """Raised by the patched download / socket functions: the code under test tried the network."""


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch.hub cache under ``tmp_path`` (via ``TORCH_HOME``) and no network; returns the
    checkpoints folder torchvision's weights are cached in."""

    def refuse(*args, **kwargs):
        raise NetworkUsed(f"network access attempted: {args[:1]}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would override TORCH_HOME
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    return tmp_path / "torch" / "hub" / "checkpoints"


def seed(weights_enum_member, model: torch.nn.Module) -> Path:
    """Save ``model``'s state_dict where torch.hub caches ``weights_enum_member``'s file."""
    path = torchvision_cache_file(weights_enum_member)
    assert path.name == Path(weights_enum_member.url).name  # the url's file name, as load_state_dict_from_url
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def _without_head(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if not k.startswith(("fc.", "classifier."))}


@pytest.mark.parametrize("name", ["IMAGENET1K_V1", "DEFAULT", "ResNet18_Weights.IMAGENET1K_V1", "imagenet1k_v1"])
def test_torchvision_name_loads_the_cached_file(offline, name):
    torch.manual_seed(0)
    ref = torchvision.models.resnet18().eval()
    path = seed(torchvision.models.ResNet18_Weights.IMAGENET1K_V1, ref)
    net = create_backbone("resnet18", weights=name).eval()
    own = net.model.state_dict()
    for k, v in _without_head(ref.state_dict()).items():
        torch.testing.assert_close(own[k], v, rtol=0, atol=0)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(net(x), torch.nn.Sequential(*list(ref.children())[:-2])(x))
    assert path.is_file()


def test_tsm_backbone_takes_torchvision_names(offline):
    torch.manual_seed(1)
    ref = torchvision.models.mobilenet_v2()
    seed(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V2, ref)
    net = create_backbone("tsm_mobilenet_v2", weights="MobileNet_V2_Weights.IMAGENET1K_V2")
    # the temporal shift wraps convs (".net." in the key); every torchvision tensor lands in its place
    own = {k.replace(".net.", "."): v for k, v in net.model.state_dict().items()}
    expected = _without_head(ref.state_dict())
    assert set(own) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(own[k], v, rtol=0, atol=0)


def test_adafocus_threads_weight_names(offline):
    torch.manual_seed(2)
    ref = torchvision.models.mobilenet_v2()
    seed(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V2, ref)
    model = AdaFocus(num_classes=3, global_backbone="mobilenet_v2", local_backbone="tiny_cnn",
                     global_weights="IMAGENET1K_V2", input_size=64, patch_size=32, policy_hidden_dim=8,
                     classifier_hidden_dim=8)  # fmt: skip
    torch.testing.assert_close(model.global_cnn.model.features[0][0].weight, ref.features[0][0].weight)
    assert model.config["global_weights"] is None  # the config describes the architecture, never re-fetches


def test_empty_cache_names_the_file_to_place(offline):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    expected = offline / Path(weights.url).name
    with pytest.raises(CheckpointNotFoundError) as err:
        create_backbone("resnet18", weights="IMAGENET1K_V1")
    msg = str(err.value)
    assert "\n" not in msg and str(expected) in msg and "local file path" in msg
    assert "NetworkUsed" in msg  # the download was attempted (asked by name) and refused by the test
    assert not expected.exists()


def test_unreadable_cached_file_is_named(offline):
    path = torchvision_cache_file(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{path}.*cannot be read"):
        create_backbone("resnet18", weights="IMAGENET1K_V1")


def test_bad_names_are_clear(offline, tmp_path):
    with pytest.raises(ValueError, match=r"ResNet50_Weights are another model's.*ResNet18_Weights"):
        create_backbone("resnet18", weights="ResNet50_Weights.IMAGENET1K_V2")
    with pytest.raises(ValueError, match=r"IMAGENET1K_V9.*choose one of \['IMAGENET1K_V1', 'DEFAULT'\]"):
        create_backbone("resnet18", weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="tiny_cnn.*no named weights"):
        create_backbone("tiny_cnn", weights="DEFAULT")
    with pytest.raises(ValueError, match=r"never downloads.*IMAGENET1K_V1"):
        create_backbone("resnet18", weights="imagenet")
    # a file path is never a name: a missing one still says so, an existing one loads as before
    with pytest.raises(FileNotFoundError, match="IMAGENET1K_V1.pth"):
        create_backbone("resnet18", weights="IMAGENET1K_V1.pth")
    local = tmp_path / "DEFAULT"
    src = create_backbone("tiny_cnn")
    torch.save(src.state_dict(), local)
    net = create_backbone("tiny_cnn", weights=str(local))
    torch.testing.assert_close(net.features[0].weight, src.features[0].weight)


@pytest.fixture
def hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, offline: Path) -> Path:
    """An empty Hugging Face hub cache under ``tmp_path``, read in offline mode (HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads both variables once, at import: set what it read
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def seed_hf(cache: Path, repo_id: str, state_dict: dict[str, torch.Tensor]) -> Path:
    """Put ``state_dict`` in the hub cache layout: ``models--org--name/{refs/main, snapshots/<commit>/...}``."""
    from safetensors.torch import save_file

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"


@pytest.mark.parametrize(("backbone", "weights"), [("timm/test_resnet", "pretrained"),
                                                   ("timm/test_resnet.r160_in1k", "pretrained"),
                                                   ("timm/test_resnet", "test_resnet.r160_in1k")])  # fmt: skip
def test_timm_name_loads_from_the_hf_cache(hf_cache, backbone, weights):
    import timm

    torch.manual_seed(3)
    ref = timm.create_model("test_resnet").eval()
    seed_hf(hf_cache, "timm/test_resnet.r160_in1k", ref.state_dict())
    net = create_backbone(backbone, weights=weights).eval()
    own = net.model.state_dict()
    for k, v in ref.state_dict().items():
        if not k.startswith("fc."):
            torch.testing.assert_close(own[k], v, rtol=0, atol=0)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(net(x), ref.forward_features(x))


def test_timm_empty_cache_error(hf_cache):
    with pytest.raises(CheckpointNotFoundError) as err:
        create_backbone("timm/test_resnet", weights="pretrained")
    msg = str(err.value)
    assert "\n" not in msg and "local file path" in msg
    assert str(hf_cache / "models--timm--test_resnet.r160_in1k") in msg and "hf download" in msg
    with pytest.raises(ValueError, match=r"no such file, nor a timm pretrained tag of test_resnet \(\['r160_in1k'\]"):
        create_backbone("timm/test_resnet", weights="a1_in1k")
