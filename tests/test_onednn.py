"""oneDNN blocked layout: same outputs as the dense trunk, where the region starts, clear errors."""

import copy
import json

import pytest
import torch
from conftest import tiny_model
from test_inference import _random_bn
from torch import nn

from adafocus.accelerate import onednn
from adafocus.accelerate.batchnorm import fold_batchnorm
from adafocus.accelerate.prepare import infer, prepare_for_inference
from adafocus.cli import main
from adafocus.models.backbones import create_backbone
from adafocus.models.backbones.tsm import TemporalShift, set_num_frames

pytestmark = pytest.mark.skipif(not onednn.available(), reason="torch built without oneDNN")


def _folded(name: str) -> nn.Module:
    net = _random_bn(create_backbone(name))
    fold_batchnorm(net)
    return net.to(memory_format=torch.channels_last)


def test_resnet_trunk_blocked_end_to_end_same_output():
    torch.manual_seed(0)
    net = _folded("resnet18")
    x = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        ref = net(x)
    blocked = copy.deepcopy(net)
    assert onednn.use_blocked_layout(blocked) == 20  # every conv of ResNet-18, downsamples included
    assert not any(type(m) is nn.Conv2d for m in blocked.modules())
    assert onednn.enters_blocked(blocked.model.conv1) and onednn.leaves_blocked(blocked.model.layer4)
    with torch.inference_mode():
        out = blocked(x)
    assert not out.is_mkldnn and out.is_contiguous()  # plain NCHW: the maps are only pooled next
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,padding", [(1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 2, 1), (7, 2, 3), (2, 1, 1)])
def test_gemm_conv_equals_conv2d(kernel, stride, padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, kernel, stride=stride, padding=padding).eval()
    gemm = onednn.GemmConv2d(conv)
    for x in (torch.randn(3, 8, 9, 7), torch.randn(3, 8, 9, 7).contiguous(memory_format=torch.channels_last)):
        with torch.inference_mode():
            torch.testing.assert_close(gemm(x), conv(x), rtol=1e-4, atol=1e-4)
    assert set(gemm.state_dict()) == {"weight", "bias"} and gemm.state_dict()["weight"].shape == conv.weight.shape
    with pytest.raises(ValueError, match="groups=1"):
        onednn.GemmConv2d(nn.Conv2d(8, 8, 3, groups=2))


def test_dilated_tsm_layer4_goes_blocked_instead_of_gemm():
    torch.manual_seed(0)
    net = _folded("tsm_tiny_resnet")
    set_num_frames(net, 4)
    conv = net.model.layer4[0].conv2
    conv.dilation, conv.padding = (2, 2), (2, 2)  # same output size, now not a GEMM
    x = torch.randn(8, 3, 64, 64)
    with torch.inference_mode():
        ref = net(x)
    onednn.use_blocked_layout(net)
    assert onednn.enters_blocked(net.model.layer4) and onednn.leaves_blocked(net.model.layer4)
    assert not any(isinstance(m, onednn.GemmConv2d) for m in net.modules())
    with torch.inference_mode():
        torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-4)


def test_tsm_trunk_converts_layer4_only():
    torch.manual_seed(0)
    net = _folded("tsm_tiny_resnet")
    set_num_frames(net, 4)
    x = torch.randn(8, 3, 64, 64)  # two clips of 4 frames
    with torch.inference_mode():
        ref = net(x)
    blocked = copy.deepcopy(net)
    assert onednn.use_blocked_layout(blocked) == 3  # layer4's BasicBlock: conv1, conv2, downsample
    block = blocked.model.layer4[0]
    assert isinstance(block.conv1, TemporalShift) and isinstance(block.conv1.net, onednn.GemmConv2d)
    assert isinstance(blocked.model.layer3[0].conv1.net, nn.Conv2d)  # the rest stays dense
    with torch.inference_mode():
        out = blocked(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_prepare_for_inference_blocked_adafocus_keeps_outputs():
    torch.manual_seed(0)
    model = _random_bn(tiny_model(local_backbone="resnet18"))
    frames = torch.randn(2, 4, 3, 64, 64)
    ref = infer(prepare_for_inference(copy.deepcopy(model)), frames)
    fast = prepare_for_inference(copy.deepcopy(model), blocked_layout=True)
    assert onednn.enters_blocked(fast.local_cnn.model.conv1)
    assert fast.global_cnn is not None and not any(
        isinstance(m, onednn.BlockedConv2d) for m in fast.global_cnn.modules()
    )  # the tiny CNN is no ResNet: left alone
    out = infer(fast, frames)
    assert torch.equal(out.offsets, ref.offsets)
    torch.testing.assert_close(out.local_features, ref.local_features, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-4, atol=1e-4)


def test_blocked_layout_errors():
    with pytest.raises(ValueError, match="not a torchvision ResNet"):
        onednn.use_blocked_layout(_folded("mobilenet_v2"))
    unfolded = create_backbone("resnet18").eval()
    with pytest.raises(ValueError, match="fold the BatchNorms"):
        onednn.use_blocked_layout(unfolded)
    assert not any(isinstance(m, onednn.BlockedConv2d) for m in unfolded.modules())  # refused before any change
    with pytest.raises(ValueError, match="inference only"):
        onednn.use_blocked_layout(_folded("resnet18").train())
    with pytest.raises(ValueError, match="float32 CPU"):
        onednn.use_blocked_layout(_folded("resnet18").double())
    with pytest.raises(ValueError, match="no ResNet backbone"):
        prepare_for_inference(tiny_model(), blocked_layout=True)
    with pytest.raises(ValueError, match="fold_bn=True"):
        prepare_for_inference(tiny_model(local_backbone="resnet18"), blocked_layout=True, fold_bn=False)


def test_benchmark_cli_blocked_layout(capsys):
    args = ["benchmark", "--models", "test_adafocus_tsm", "--repeats", "1", "--warmup", "0", "--batch-size", "2",
            "--threads", "1", "--no-keep-freed-memory", "--blocked-layout", "--no-breakdown"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in rows} == {"test_adafocus_tsm", "test_tsm_plus"}
    assert all(r["setting"]["blocked_layout"] for r in rows)
    assert main([*args, "--compile"]) == 2
    assert "--blocked-layout needs" in capsys.readouterr().err


@pytest.mark.parametrize("input_size", [None, 64])  # 64 px: a GEMM layer4
def test_blocked_trunk_saves_copies_and_loads_dense_weights(tmp_path, input_size):
    torch.manual_seed(0)
    net = _folded("resnet18")
    dense_sd = net.state_dict()
    x = torch.randn(2, 3, 64, 64)
    onednn.use_blocked_layout(net, input_size=input_size)
    with torch.inference_mode():
        ref = net(x)
    sd = net.state_dict()
    assert len(sd) == 40 and not any(v.is_mkldnn for v in sd.values())  # 20 convs: weight + folded bias
    assert sd.keys() == dense_sd.keys() and all(torch.equal(v, dense_sd[k]) for k, v in sd.items())  # as if dense
    torch.save(net, tmp_path / "net.pt")  # oneDNN tensors alone cannot be pickled
    other = create_backbone("resnet18").eval()
    fold_batchnorm(other)
    onednn.use_blocked_layout(other, input_size=input_size)
    other.load_state_dict(sd)
    dense = create_backbone("resnet18").eval()
    fold_batchnorm(dense)
    dense.load_state_dict(sd)  # a prepared trunk's weights load into a plain one too
    with torch.inference_mode():
        torch.testing.assert_close(dense(x), ref, rtol=1e-4, atol=1e-4)
    for copy_ in (copy.deepcopy(net), torch.load(tmp_path / "net.pt", weights_only=False), other):
        assert all(
            m.weight.is_mkldnn for m in copy_.modules() if isinstance(m, (onednn.BlockedConv2d, onednn.GemmConv2d))
        )
        with torch.inference_mode():
            assert torch.equal(copy_(x), ref)


@pytest.mark.parametrize("input_size,gemm", [(None, False), (224, False), (128, False), (96, True), (64, True)])
def test_small_inputs_get_a_gemm_layer4(input_size, gemm):
    """layer4 maps of at most 3x3 (inputs up to 96 px): GEMMs after a blocked conv1..layer3."""
    torch.manual_seed(0)
    net = _folded("resnet18")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = net(x)
    assert onednn.use_blocked_layout(net, input_size=input_size) == 20
    layer4_convs = [m for m in net.model.layer4.modules() if isinstance(m, (onednn.GemmConv2d, onednn.BlockedConv2d))]
    assert len(layer4_convs) == 5 and all(isinstance(m, onednn.GemmConv2d) == gemm for m in layer4_convs)
    assert onednn.leaves_blocked(net.model.layer3) == gemm and onednn.leaves_blocked(net.model.layer4) != gemm
    with torch.inference_mode():
        torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-4)


def test_prepare_for_inference_tells_each_trunk_its_input_size():
    """f_L of an AdaFocus sees patch_size crops; a full-frame model's trunk sees input_size frames."""
    from adafocus.models.full_frame import TSMPlus

    patches = prepare_for_inference(tiny_model(local_backbone="resnet18").eval(), blocked_layout=True)
    assert isinstance(patches.local_cnn.model.layer4[0].conv1, onednn.GemmConv2d)  # 32-px patches
    frames = prepare_for_inference(
        TSMPlus(5, global_backbone=None, local_backbone="resnet18", num_frames=2, input_size=224).eval(),
        blocked_layout=True,
    )
    assert onednn.leaves_blocked(frames.local_cnn.model.layer4)  # 224-px frames: blocked to the end


def test_a_torch_without_the_private_ops_falls_back_to_plain_convolutions(monkeypatch):
    def gone(*args, **kwargs):
        raise RuntimeError("no such op in this torch")

    onednn.available.cache_clear()
    monkeypatch.setattr(torch._C._nn, "mkldnn_reorder_conv2d_weight", gone)
    try:
        assert not onednn.available()
        model = tiny_model(local_backbone="resnet18")
        frames = torch.randn(1, 4, 3, 64, 64)
        ref = infer(prepare_for_inference(copy.deepcopy(model)), frames).logits
        with pytest.warns(UserWarning, match="keep their plain convolutions"):
            plain = prepare_for_inference(model, blocked_layout=True)
        assert not any(isinstance(m, (onednn.BlockedConv2d, onednn.GemmConv2d)) for m in plain.modules())
        torch.testing.assert_close(infer(plain, frames).logits, ref, rtol=0, atol=0)
        with pytest.raises(RuntimeError, match="lacks oneDNN or the oneDNN ops"):
            onednn.use_blocked_layout(plain.local_cnn)
    finally:
        monkeypatch.undo()
        onednn.available.cache_clear()
    assert onednn.available()
