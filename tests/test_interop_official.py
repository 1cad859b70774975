"""Official AdaFocus V1 checkpoints -> AdaFocus: key placement, errors, safe loading, equal outputs.

The stand-ins below reproduce only the *naming and shapes* of the official modules (models/gfv_net.py
GFV/Glancer/Focuser/RecurrentClassifier, models/ppo.py PPO/ActorCritic; its mobilenet.py/resnet.py
use torchvision's key names), and ``official_forward`` is a hand-written reference of the official
inference path (per-step policy with a sequence-first GRU, softmax + argmax, floor(a * (H - P)) crop,
GRU classifier on [mean e_G, mean e_L]).
"""

import argparse
import copy

import numpy as np
import pytest
import torch
import torchvision
from conftest import Trap
from torch import nn

from adafocus.cli import main
from adafocus.interop import convert_official_checkpoint, load_converted, load_official_checkpoint

K, HIDDEN, CLS_HIDDEN, GRID, SIZE, P = 5, 16, 24, 7, 64, 32


class ActorCriticStandIn(nn.Module):
    def __init__(self, c: int, side: int) -> None:
        super().__init__()
        self.state_encoder = nn.Sequential(
            nn.Conv2d(c, 32, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(32 * side * side, HIDDEN), nn.ReLU()
        )
        self.gru = nn.GRU(HIDDEN, HIDDEN)  # sequence-first, as the official ActorCritic
        self.actor = nn.Sequential(nn.Linear(HIDDEN, GRID * GRID), nn.Softmax(dim=-1))
        self.critic = nn.Sequential(nn.Linear(HIDDEN, 1))


def _randomise_bn(m: nn.Module) -> None:
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)


def official_gfv() -> nn.Module:
    gfv = nn.Module()
    gfv.glancer, gfv.focuser, gfv.classifier = nn.Module(), nn.Module(), nn.Module()
    gfv.glancer.net = torchvision.models.mobilenet_v2(num_classes=K)
    gfv.focuser.net = torchvision.models.resnet50(num_classes=K)
    gfv.focuser.policy = nn.Module()
    gfv.focuser.policy.policy = ActorCriticStandIn(1280, SIZE // 32)
    gfv.focuser.policy.policy_old = copy.deepcopy(gfv.focuser.policy.policy)
    gfv.classifier.gru = nn.GRU(1280 + 2048, CLS_HIDDEN, batch_first=True)
    gfv.classifier.fc = nn.Linear(CLS_HIDDEN, K)
    _randomise_bn(gfv)
    return gfv.eval()


def checkpoint(gfv: nn.Module) -> dict:
    """The dict the official main_dist.py saves (best-model branch)."""
    return {
        "epoch": 3,
        "model_state_dict": gfv.state_dict(),
        "glancer": gfv.glancer.state_dict(),
        "focuser": gfv.focuser.state_dict(),
        "fc": gfv.classifier.state_dict(),
        "scaler": None,
        "policy": gfv.focuser.policy.policy.state_dict(),
        "acc": 71.5,
        "best_acc": 71.5,
        "optimizer": None,
    }


@torch.no_grad()
def official_forward(gfv: nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, t = frames.shape[:2]
    ac = gfv.focuser.policy.policy_old
    table = torch.tensor([[i / (GRID - 1), j / (GRID - 1)] for i in range(GRID) for j in range(GRID)])
    rn = gfv.focuser.net
    h_pol, h_cls, logits, coords = torch.zeros(1, b, HIDDEN), torch.zeros(1, b, CLS_HIDDEN), [], []
    for step in range(t):
        img = frames[:, step]
        fmap = gfv.glancer.net.features(img)
        z = ac.state_encoder(fmap)
        out, h_pol = ac.gru(z.view(1, b, -1), h_pol)
        action = ac.actor(out[0]).max(1)[1]
        xy = torch.floor(table[action] * (SIZE - P)).int()
        patches = torch.stack([img[i, :, xy[i, 0] : xy[i, 0] + P, xy[i, 1] : xy[i, 1] + P] for i in range(b)])
        x = rn.maxpool(rn.relu(rn.bn1(rn.conv1(patches))))
        local = rn.avgpool(rn.layer4(rn.layer3(rn.layer2(rn.layer1(x))))).view(b, -1)
        feat = torch.cat([fmap.mean([2, 3]), local], dim=1).unsqueeze(1)
        out, h_cls = gfv.classifier.gru(feat, h_cls)
        logits.append(gfv.classifier.fc(out[:, 0]))
        coords.append(xy)
    return torch.stack(logits, 1), torch.stack(coords, 1)


@pytest.fixture(scope="module")
def gfv() -> nn.Module:
    torch.manual_seed(1)
    return official_gfv()


def test_converted_model_matches_official_outputs(gfv):
    res = convert_official_checkpoint(checkpoint(gfv), patch_size=P, input_size=SIZE)
    assert not res.missing
    assert set(res.mapped) | set(res.dropped) == set(gfv.state_dict())  # every official tensor accounted for
    assert {k.rsplit(".", 1)[0] for k in res.dropped} >= {"glancer.net.classifier.1", "focuser.net.fc"}
    assert res.config["grid_size"] == GRID and res.config["glance_size"] == SIZE and res.config["reuse_global"]
    model = res.model.eval()
    frames = torch.randn(2, 3, 3, SIZE, SIZE)
    ref_logits, ref_xy = official_forward(gfv, frames)
    with torch.no_grad():
        out = model(frames)
        torch.testing.assert_close(out.offsets.int(), ref_xy)
        torch.testing.assert_close(out.logits, ref_logits, rtol=1e-4, atol=1e-5)
        same = model(frames, locations=out.locations)  # explicit patch locations give the same result
        torch.testing.assert_close(same.logits, ref_logits, rtol=1e-4, atol=1e-5)
        state = model.init_state()  # online inference matches step by step
        for t in range(3):
            step, state = model.step(frames[:, t], state)
            torch.testing.assert_close(step.logits, ref_logits[:, t], rtol=1e-4, atol=1e-5)


def test_policy_logits_softmax_equals_official_probabilities(gfv):
    res = convert_official_checkpoint({"model_state_dict": gfv.state_dict()}, patch_size=P, input_size=SIZE)
    h = torch.randn(4, HIDDEN)
    with torch.no_grad():
        torch.testing.assert_close(res.model.policy.actor(h).softmax(-1), gfv.focuser.policy.policy_old.actor(h))
        torch.testing.assert_close(res.model.policy.critic(h), gfv.focuser.policy.policy_old.critic(h))


def test_parts_only_checkpoint_and_cli_roundtrip(gfv, tmp_path, capsys):
    ckpt = {k: v for k, v in checkpoint(gfv).items() if k != "model_state_dict"}
    src, out = tmp_path / "official.pth.tar", tmp_path / "converted.pt"
    torch.save(ckpt, src)
    assert (
        main(["convert-official", str(src), "--out", str(out), "--patch-size", str(P), "--input-size", str(SIZE)]) == 0
    )
    assert "converted" in capsys.readouterr().out
    model = load_converted(out).eval()
    frames = torch.randn(1, 2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(frames).logits, official_forward(gfv, frames)[0], rtol=1e-4, atol=1e-5)


def test_renamed_key_and_shape_change_are_named(gfv):
    sd = dict(gfv.state_dict())
    sd["classifier.fc.wieght"] = sd.pop("classifier.fc.weight").clone()
    with pytest.raises(ValueError, match="classifier.fc.wieght"):
        convert_official_checkpoint({"model_state_dict": sd}, patch_size=P, input_size=SIZE)
    sd = dict(gfv.state_dict())
    sd["focuser.net.layer2.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    with pytest.raises(ValueError, match=r"shape mismatch.*focuser.net.layer2.0.conv2.weight"):
        convert_official_checkpoint({"model_state_dict": sd}, patch_size=P, input_size=SIZE)
    sd = {k: v for k, v in gfv.state_dict().items() if "policy" not in k}
    with pytest.raises(ValueError, match=r"not in the checkpoint.*policy\.encoder"):
        convert_official_checkpoint({"model_state_dict": sd}, patch_size=P, input_size=SIZE)
    res = convert_official_checkpoint(
        {"model_state_dict": sd}, patch_size=P, input_size=SIZE, allow_missing=["policy."]
    )
    assert res.missing and all(k.startswith("policy.") for k in res.missing)
    with pytest.raises(ValueError, match="patch_size"):
        convert_official_checkpoint({"model_state_dict": gfv.state_dict()})


def test_safe_loading_allow_list(gfv, tmp_path):
    ckpt = {"model_state_dict": gfv.state_dict(), "acc": np.float64(75.0), "args": argparse.Namespace(patch_size=P)}
    torch.save(ckpt, tmp_path / "ok.pth.tar")
    loaded = load_official_checkpoint(tmp_path / "ok.pth.tar")
    assert loaded["args"].patch_size == P and float(loaded["acc"]) == 75.0
    res = convert_official_checkpoint(tmp_path / "ok.pth.tar", input_size=SIZE)  # patch_size from args
    assert res.config["patch_size"] == P
    Trap.ran = False  # shared with the other tests that trust it
    torch.save({"model_state_dict": {}, "acc": np.float64(1.0), "evil": Trap()}, tmp_path / "evil.pth.tar")
    with pytest.raises(ValueError, match=r"evil.pth.tar: refused.*Trap") as info:
        load_official_checkpoint(tmp_path / "evil.pth.tar")
    assert "numpy" not in str(info.value)  # only what is outside the allow-list is named
    assert not Trap.ran
    with pytest.raises(FileNotFoundError, match="missing.pth.tar"):
        load_official_checkpoint(tmp_path / "missing.pth.tar")
