"""Official AdaFocusV2 checkpoints -> AdaFocusV2: key placement, errors, safe loading, equal outputs.

The stand-ins below reproduce only the *naming and shapes* of the official modules of
LeapLabTHU/AdaFocusV2 "Experiments on ActivityNet, FCVID and Mini-Kinetics" (models/adafocus_v2.py
AdaFocus / PolicySTN / PoolingClassifier / MultiLayerPerceptron; models/mobilenet_v2.py, whose
InvertedResidual numbers its layers ``conv.0..7`` unlike torchvision; models/resnet.py, which has
torchvision's names), with small widths (the official code fixes 64 policy channels and a 4096-wide
MLP; the converter reads both from the shapes). ``official_forward`` is a hand-written reference of
the official eval forward (frames in the order given, the policy's conv-bn-tanh-linear-bn-tanh-GRU-
linear-sigmoid, the affine_grid / grid_sample crop with align_corners=False, the running-max MLP
classifier with one head per step).
"""

import argparse
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import Trap
from torch import nn

from adafocus import load_model
from adafocus.cli import main
from adafocus.errors import CheckpointError
from adafocus.interop import convert_official_v2_checkpoint, is_official_v2, load_official_checkpoint
from adafocus.models.crop import sample_patches

K, T, SIZE, P, HID, CH, CLS = 5, 4, 64, 32, 16, 8, 24
R50_GLANCE = 32  # the official res50 glance is 96x96 for 224 frames; scaled down here
ORDER = [1, 0, 3, 2]  # official main_v2.input_order(4) (--sample)
MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _conv_bn_relu6(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]


class InvertedResidualStandIn(nn.Module):
    """Official (tonylins) layout: ``conv`` = [pw, bn, relu6,] dw, bn, relu6, pw-linear, bn."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hid = cin * expand
        layers = [] if expand == 1 else _conv_bn_relu6(cin, hid, 1)
        layers += _conv_bn_relu6(hid, hid, 3, stride, hid) + [nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2StandIn(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        feats, cin = [nn.Sequential(*_conv_bn_relu6(3, 32, 3, 2))], 32
        for t, c, n, s in MBV2:
            for i in range(n):
                feats.append(InvertedResidualStandIn(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*feats, nn.Sequential(*_conv_bn_relu6(cin, 1280, 1)))
        self.classifier = nn.Linear(1280, num_classes)  # unused by the official forward


def official_adafocus(glance: str) -> nn.Module:
    """The official ``AdaFocus`` module tree (names and shapes), random weights and BN statistics."""
    m = nn.Module()
    if glance == "mbv2":
        m.global_CNN, d_g, side = MobileNetV2StandIn(K), 1280, SIZE // 32
    else:
        m.global_CNN, d_g, side = torchvision.models.resnet50(num_classes=K), 2048, math.ceil(R50_GLANCE / 32)
    m.global_CNN_fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(d_g, K))
    m.local_CNN = torchvision.models.resnet50(num_classes=K)
    m.local_CNN_fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(2048, K))
    m.policy_stn = nn.Module()
    m.policy_stn.encoder = nn.Sequential(
        nn.Conv2d(d_g, CH, 1, bias=False), nn.BatchNorm2d(CH), nn.Tanh(), nn.Flatten(),
        nn.Linear(CH * side * side, HID), nn.BatchNorm1d(HID), nn.Tanh(),
    )  # fmt: skip
    m.policy_stn.gru = nn.GRU(HID, HID, batch_first=True)
    m.policy_stn.fc = nn.Sequential(nn.Linear(HID, 2), nn.Sigmoid())
    m.classifier = nn.Module()
    m.classifier.mlp = nn.Module()
    m.classifier.mlp.layers = nn.Sequential(nn.Linear(d_g + 2048, CLS), nn.BatchNorm1d(CLS), nn.ReLU())
    m.classifier.classifiers = nn.ModuleList(nn.Sequential(nn.Dropout(0.2), nn.Linear(CLS, K)) for _ in range(T))
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(0, 0.1)
            bn.momentum = None  # running stats = the average over the calibration batches
        official_forward(m.train(), torch.randn(4, T, 3, SIZE, SIZE), glance)  # activations keep their scale
        for bn in bns:  # then random statistics near those
            bn.running_mean.add_(torch.randn_like(bn.running_mean) * 0.1 * bn.running_var.sqrt())
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.7, 1.3))
            bn.momentum = 0.1
        m.policy_stn.fc[0].weight.mul_(8.0)  # spread the locations over the frame
    return m.eval()


def checkpoint(m: nn.Module) -> dict:
    """What the official main_v2.py saves: ``{"state_dict": DataParallel(model).state_dict()}``."""
    return {"state_dict": {"module." + k: v for k, v in m.state_dict().items()}}


def _resnet_trunk(rn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = rn.maxpool(rn.relu(rn.bn1(rn.conv1(x))))
    return rn.layer4(rn.layer3(rn.layer2(rn.layer1(x))))


def official_crop(images: torch.Tensor, actions: torch.Tensor, size: int, p: int) -> torch.Tensor:
    """The official get_patches_frame: top-left ``a * (size - p)``, affine_grid / grid_sample defaults."""
    y1, x1 = actions[:, 0] * (size - p), actions[:, 1] * (size - p)
    theta = images.new_zeros(len(images), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = p / size
    theta[:, 0, 2], theta[:, 1, 2] = -1 + (2 * x1 + p) / size, -1 + (2 * y1 + p) / size
    grid = F.affine_grid(theta, [len(images), 3, p, p], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def official_forward(m: nn.Module, frames: torch.Tensor, glance: str) -> dict[str, torch.Tensor]:
    """The official eval forward on ``(B, T, 3, H, W)`` frames, processed in the order given."""
    b, t = frames.shape[:2]
    images = frames.reshape(b * t, 3, SIZE, SIZE)
    if glance == "res50":
        small = F.interpolate(frames.reshape(b, t * 3, SIZE, SIZE), (R50_GLANCE, R50_GLANCE), mode="bilinear",
                              align_corners=True)  # fmt: skip
        fmap = _resnet_trunk(m.global_CNN, small.reshape(b * t, 3, R50_GLANCE, R50_GLANCE))
    else:
        fmap = m.global_CNN.features(images)
    g = fmap.mean([2, 3])
    pol = m.policy_stn
    out, _ = pol.gru(pol.encoder(fmap).view(b, t, HID), fmap.new_zeros(1, b, HID))
    actions = pol.fc(out.reshape(b * t, HID))  # (y, x) in [0, 1]
    patches = official_crop(images, actions, SIZE, P)
    local = m.local_CNN.avgpool(_resnet_trunk(m.local_CNN, patches)).flatten(1)
    z = m.classifier.mlp.layers(torch.cat([g, local], dim=1)).view(b, t, -1)
    cur, logits = z[:, 0], []
    for i in range(t):
        cur = cur if i == 0 else torch.stack([z[:, i], cur], dim=1).max(dim=1)[0]
        logits.append(m.classifier.classifiers[i](cur))
    g_logits, l_logits = m.global_CNN_fc(g).view(b, t, K), m.local_CNN_fc(local).view(b, t, K)
    return dict(logits=torch.stack(logits, 1), locations=actions.view(b, t, 2), global_logits=g_logits,
                local_logits=l_logits)  # fmt: skip


@pytest.fixture(scope="module", params=["mbv2", "res50"])
def official(request) -> tuple[str, nn.Module]:
    torch.manual_seed(3)
    return request.param, official_adafocus(request.param)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_every_key_is_placed_and_outputs_equal_the_official_forward(official):
    glance, m = official
    res = convert_official_v2_checkpoint(checkpoint(m), patch_size=P, input_size=SIZE)  # glance side inferred
    official_keys = set(m.state_dict())
    assert set(res.mapped) | set(res.dropped) == official_keys and not set(res.mapped) & set(res.dropped)
    assert set(res.mapped.values()) == set(res.model.state_dict())  # every adafocus tensor filled
    heads = {"global_CNN.classifier", "local_CNN.fc"} if glance == "mbv2" else {"global_CNN.fc", "local_CNN.fc"}
    assert {k.rsplit(".", 1)[0] for k in res.dropped} == heads and not res.missing
    cfg = res.config
    assert (cfg["num_classes"], cfg["num_frames"], cfg["policy_hidden_dim"]) == (K, T, HID)
    assert (cfg["policy_channels"], cfg["classifier_hidden_dim"], cfg["patch_size"]) == (CH, CLS, P)
    assert cfg["global_backbone"] == ("mobilenet_v2" if glance == "mbv2" else "resnet50")
    assert cfg["glance_size"] == (SIZE if glance == "mbv2" else R50_GLANCE)
    frames = torch.randn(2, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    ordered = frames[:, ORDER]
    assert torch.equal(res.model.order_frames(frames), ordered)  # our coarse_to_fine is the official --sample order
    # float64 proves the mapping; in float32 the res50 glance's random ResNet-50 amplifies last-bit differences
    # of the glance resize ~6e3-fold (measured: logits differ by ~0.1 of ~20), the mbv2 model is bit-exact
    for dtype in (torch.float64, torch.float32) if glance == "mbv2" else (torch.float64,):
        ref_net, model, x = copy.deepcopy(m).to(dtype), copy.deepcopy(res.model).eval().to(dtype), frames.to(dtype)
        ref = official_forward(ref_net, x[:, ORDER], glance)
        kw = {}
        if glance == "res50":  # the official glance resize uses align_corners=True: give the model those frames
            small = F.interpolate(x.flatten(0, 1), (R50_GLANCE, R50_GLANCE), mode="bilinear", align_corners=True)
            kw["glance_input"] = small.view(2, T, 3, R50_GLANCE, R50_GLANCE)
        with torch.no_grad():
            out = model(x, **kw)
            g_logits, l_logits = model.auxiliary_logits(out)
        assert ref["locations"].max() - ref["locations"].min() > 0.3  # the crops really move
        diffs = {
            "logits": _max_diff(out.logits, ref["logits"]),
            "locations": _max_diff(out.locations, ref["locations"]),
            "global_logits": _max_diff(g_logits, ref["global_logits"]),
            "local_logits": _max_diff(l_logits, ref["local_logits"]),
        }
        print(f"{glance} {dtype}: largest |converted - official reference| {diffs}")
        assert max(diffs.values()) < 1e-5, diffs
        if glance == "mbv2" and dtype == torch.float64:  # online too (float32 rounds apart: 1-frame batches)
            state = model.init_state()
            with torch.no_grad():
                for t in range(T):
                    step, state = model.step(x[:, ORDER][:, t], state)
                    assert _max_diff(step.logits, ref["logits"][:, t]) < 1e-5


def test_the_crop_samples_the_official_points():
    for size, p, tol in ((SIZE, P, 1e-5), (224, 128, 1e-3)):
        loc = torch.rand(8, 2, generator=torch.Generator().manual_seed(1))
        loc[:4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.37, 0.5]])
        # on a ramp image (value = column) bilinear sampling returns the sampled column; the far edge's last
        # sample may pass the last pixel centre by rounding and blend in the official zero padding: left out
        ramp = torch.arange(size, dtype=torch.float32).expand(8, 3, size, size).contiguous()
        exact = (loc[:, 1:].double() * (size - p)).view(8, 1, 1, 1) + torch.arange(p - 1, dtype=torch.float64)
        for patches in (sample_patches(ramp, loc, p), official_crop(ramp, loc, size, p)):
            assert _max_diff(patches[..., :-1, :-1].double(), exact) < tol  # float32 grid rounding: ~4e-4 px at 224
        frames = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(2))
        diff = _max_diff(sample_patches(frames, loc, p), official_crop(frames, loc, size, p))
        print(f"crop {size}/{p}: largest |sample_patches - official crop| {diff:.2e}")
        assert diff < tol


def _refused(path, match: str, **kw) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        convert_official_v2_checkpoint(path, **{"patch_size": P, "input_size": SIZE, **kw})
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


@pytest.fixture(scope="module")
def small_official() -> nn.Module:
    torch.manual_seed(4)
    return official_adafocus("mbv2")


def test_unplaced_missing_and_wrong_shape_keys_are_one_line_errors(small_official, tmp_path):
    base, head = checkpoint(small_official)["state_dict"], "module.classifier.classifiers.{}.1.{}"
    cases = {
        "extra": ({**base, "module.policy_stn.extra.weight": torch.zeros(3)}, r"no place.*policy_stn\.extra\.weight"),
        "missing": ({k: v for k, v in base.items() if k != "module.local_CNN.layer3.2.bn2.running_var"},
                    r"not in the checkpoint.*local_cnn\.model\.layer3\.2\.bn2\.running_var"),
        "shape": ({**base, "module.classifier.mlp.layers.1.running_mean": torch.zeros(CLS + 1)},
                  r"shape mismatch.*classifier\.mlp\.layers\.1\.running_mean \(25,\)"),
        "renamed": ({**{k: v for k, v in base.items() if "local_CNN_fc.1.bias" not in k},
                     "module.local_CNN_fc.1.bais": base["module.local_CNN_fc.1.bias"]},
                    r"no place.*local_CNN_fc\.1\.bais.*not in the checkpoint.*local_fc\.1\.bias"),
        "config": ({k: v for k, v in base.items() if "policy_stn.gru.weight_hh" not in k},
                   r"lacks policy_stn\.gru\.weight_hh_l0"),
        "heads20": ({**base, **{head.format(i, leaf): base[head.format(0, leaf)] for i in range(T, 20)
                                for leaf in ("weight", "bias")}},
                    r"T=20 per-step heads.*only up to T=19: pass frame_order="),
    }  # fmt: skip
    for name, (sd, match) in cases.items():
        path = tmp_path / f"{name}.pth.tar"
        torch.save({"state_dict": sd}, path)
        _refused(path, match)
    path = tmp_path / "ok.pth.tar"
    torch.save({"state_dict": base}, path)
    _refused(path, "patch_size is not stored", patch_size=None)
    _refused(path, r"input_size.*--input-size, 64", input_size=224)  # the policy's map says 64x64 frames
    _refused(path, r"frame_order must be", frame_order=[0, 1, 1, 2])
    torch.save({"model_state_dict": {"glancer.net.features.0.0.weight": torch.zeros(1)}}, tmp_path / "v1.pth.tar")
    _refused(tmp_path / "v1.pth.tar", "not an official AdaFocusV2 checkpoint")


def test_pickle_payload_is_refused_unless_trusted_and_args_are_read(small_official, tmp_path):
    sd = checkpoint(small_official)["state_dict"]
    args = argparse.Namespace(patch_size=P, input_size=SIZE, sample=False, dropout=0.2)
    torch.save({"state_dict": sd, "best_acc1": np.float64(75.0), "args": args}, tmp_path / "ok.pth.tar")
    assert is_official_v2(load_official_checkpoint(tmp_path / "ok.pth.tar"))
    res = convert_official_v2_checkpoint(tmp_path / "ok.pth.tar")  # patch_size, input_size, order from args
    assert res.config["patch_size"] == P and res.config["frame_order"] == "temporal"
    Trap.ran = False  # shared with the other tests that trust it
    torch.save({"state_dict": sd, "best_acc1": np.float64(1.0), "evil": Trap()}, tmp_path / "evil.pth.tar")
    msg = _refused(tmp_path / "evil.pth.tar", r"evil.pth.tar: refused.*Trap")
    assert "numpy" not in msg and not Trap.ran
    res = convert_official_v2_checkpoint(tmp_path / "evil.pth.tar", patch_size=P, input_size=SIZE, trust=True)
    assert Trap.ran and len(res.mapped) == len(sd) - 4  # trusted: unpickled (payload ran) and converted


def test_cli_converts_a_v2_file_end_to_end(small_official, tmp_path, capsys):
    src, out = tmp_path / "actnet_p32_mbv2.pth.tar", tmp_path / "converted.pt"
    torch.save(checkpoint(small_official), src)
    argv = ["convert-official", str(src), "--out", str(out), "--patch-size", str(P), "--input-size", str(SIZE)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"converted {len(small_official.state_dict()) - 4} tensors" in printed and "local_CNN.fc" in printed
    model = load_model(out)
    frames = torch.randn(1, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = model(frames).logits
    assert _max_diff(got, official_forward(small_official, frames[:, ORDER], "mbv2")["logits"]) < 1e-5
    bad = tmp_path / "bad.pth.tar"
    sd = checkpoint(small_official)["state_dict"]
    torch.save({"state_dict": {**sd, "module.policy_stn.fc.0.weight": torch.zeros(3, HID)}}, bad)
    assert main(["convert-official", str(bad), "--out", str(tmp_path / "x.pt"), "--patch-size", str(P),
                 "--input-size", str(SIZE)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "policy_stn.fc.0.weight" in err[0], err
    assert not (tmp_path / "x.pt").exists()
