"""Official AdaFocus V1 Something-Something checkpoints -> AdaFocusTSM: key placement, errors, safe loading,
equal outputs.

The stand-ins reproduce only the *naming and shapes* of the official modules of blackfeather-wang/AdaFocus
"Experiments on Something-Something V1&V2" (models/gfv_net.py GFV / Glancer / Focuser; models/mobilenetv2.py,
the tonylins MobileNet-V2 whose InvertedResidual numbers its layers ``conv.0..7``, reused from
tests/test_interop_official_v2.py; ops/temporal_shift.py TemporalShift, reused from
tests/test_interop_official_v2_tsm.py; models/tsn.py TSN over a torchvision ResNet, whose ``base_model``
every official script turns into ``nn.Sequential(*children[:-1])``; models/ppo_continuous.py ActorCritic
with ``with_bn=True``). The focuser is a TSM ResNet-18 (official: ResNet-50; same names), the policy
narrow, the frames 64 pixels: the converter reads all of these from the shapes. ``official_forward`` is a
hand-written reference of the official eval forward (``evaluate.py``: ``GFV.glance`` on the glance frames,
``action_stage2(training=False)``: the policy's ``action_mean`` on the stacked maps, ``get_patch``'s
``floor(a * (H - P))`` crop of every focus frame, TSN focus, dropout, fc, consensus avg + glancer head avg).
"""

import argparse

import pytest
import torch
import torchvision
from conftest import Trap
from test_interop_official_v2 import MobileNetV2StandIn, _max_diff
from test_interop_official_v2_tsm import TemporalShiftStandIn
from torch import nn

from adafocus import load_model
from adafocus.cli import main
from adafocus.errors import CheckpointError
from adafocus.interop import convert_official_tsm_checkpoint, is_official_tsm

K, TG, TL, SIZE, P, CH, HID = 5, 8, 12, 64, 32, 8, 16
D_G, D_L = 1280, 512
SIDE = SIZE // 32


class ActorCriticStandIn(nn.Module):
    """ppo_continuous.ActorCritic(policy_conv=True, with_bn=True): the PPO object keeps it outside GFV."""

    def __init__(self) -> None:
        super().__init__()
        self.state_encoder = nn.Sequential(
            nn.Conv2d(TG * D_G, CH, 1, bias=False), nn.BatchNorm2d(CH), nn.ReLU(), nn.Flatten(),
            nn.Linear(CH * SIDE * SIDE, HID), nn.BatchNorm1d(HID), nn.ReLU(),
        )  # fmt: skip
        self.gru = nn.GRU(HID, HID, batch_first=False)
        self.actor = nn.Sequential(nn.Linear(HID, 2), nn.Sigmoid())
        self.critic = nn.Sequential(nn.Linear(HID, 1))


def official_gfv(sequential: bool = True) -> tuple[nn.Module, nn.Module]:
    """``(GFV, ActorCritic)`` with random weights and BN statistics; ``sequential``: the focuser trunk as
    every official script saves it (``Sequential(*children[:-1])``), else the named torchvision ResNet."""
    gfv = nn.Module()
    gfv.glancer = nn.Module()
    gfv.glancer.net = MobileNetV2StandIn(K)
    for blk in gfv.glancer.net.modules():  # Glancer: shift where len(conv) == 8 and use_res_connect
        if hasattr(blk, "residual") and len(blk.conv) == 8 and blk.residual:
            blk.conv[0] = TemporalShiftStandIn(blk.conv[0], TG)
    rn = torchvision.models.resnet18()
    for layer in (rn.layer1, rn.layer2, rn.layer3, rn.layer4):  # make_temporal_shift(place="blockres")
        for blk in layer:
            blk.conv1 = TemporalShiftStandIn(blk.conv1, TL)
    rn.avgpool = nn.AdaptiveAvgPool2d(1)
    gfv.focuser = nn.Module()
    gfv.focuser.net = nn.Module()
    gfv.focuser.net.base_model = nn.Sequential(*list(rn.children())[:-1]) if sequential else rn
    gfv.dropout, gfv.classifier = nn.Dropout(0.5), nn.Linear(D_L, K)
    policy = ActorCriticStandIn()
    bns = [m for m in (*gfv.modules(), *policy.modules()) if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(0, 0.1)
            bn.momentum = None  # running stats = the average over the calibration batch
        official_forward(gfv.train(), policy.train(), *_clips(2, seed=99))  # activations keep their scale
        for bn in bns:  # then random statistics near those
            bn.running_mean.add_(torch.randn_like(bn.running_mean) * 0.1 * bn.running_var.sqrt())
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.7, 1.3))
            bn.momentum = 0.1
        policy.actor[0].weight.mul_(8.0)  # spread the locations over the frame
        gfv.glancer.net.classifier.bias.normal_(0, 1.0)
    return gfv.eval(), policy.eval()


def _trunk(base: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TSN ``base_model`` up to its average pool (the named layout would go on into the ImageNet fc)."""
    if isinstance(base, nn.Sequential):
        return base(x).squeeze()
    x = base.maxpool(base.relu(base.bn1(base.conv1(x))))
    return base.avgpool(base.layer4(base.layer3(base.layer2(base.layer1(x))))).squeeze()


def official_forward(gfv: nn.Module, policy: nn.Module, glance: torch.Tensor, focus: torch.Tensor):
    """Official evaluate.py on glance ``(B, TG, 3, H, W)`` / focus ``(B, TL, 3, H, W)``: ``(logits, top-left)``."""
    b = glance.shape[0]
    fmap = gfv.glancer.net.features(glance.reshape(b * TG, 3, SIZE, SIZE))  # Glancer.get_featmap
    g_logit = gfv.glancer.net.classifier(fmap.mean(3).mean(2)).view(b, TG, K)
    state = policy.state_encoder(fmap.view(b, TG * D_G, SIDE, SIDE))  # video_div=1: all glance maps stacked
    out, _ = policy.gru(state.view(1, b, HID), torch.zeros(1, b, HID))
    action = policy.actor(out[0])  # eval: action_mean
    imgs = focus.reshape(b, TL * 3, SIZE, SIZE)
    coord = torch.floor(action * (SIZE - P)).int()  # models/utils.get_patch
    patches = torch.cat([imgs[i : i + 1, :, coord[i, 0] : coord[i, 0] + P, coord[i, 1] : coord[i, 1] + P]
                         for i in range(b)]).view(b * TL, 3, P, P)  # fmt: skip
    local = gfv.classifier(gfv.dropout(_trunk(gfv.focuser.net.base_model, patches))).view(b, TL, K)
    return local.mean(1) + g_logit.mean(1), coord


def checkpoint(gfv: nn.Module, policy: nn.Module) -> dict:
    """What the official stage2.py / stage3.py save (the optimizer state left out)."""
    return {"epoch": 4, "model_state_dict": gfv.state_dict(), "glancer": gfv.glancer.state_dict(),
            "focuser": gfv.focuser.state_dict(), "fc": gfv.classifier.state_dict(), "policy": policy.state_dict(),
            "acc": torch.tensor(40.5), "best_acc": torch.tensor(41.0)}  # fmt: skip


def _clips(b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, TG, 3, SIZE, SIZE, generator=gen), torch.randn(b, TL, 3, SIZE, SIZE, generator=gen)


def _n_official(ckpt: dict) -> int:
    return sum(len(ckpt[e]) for e in ("glancer", "focuser", "fc", "policy"))


@pytest.fixture(scope="module")
def official() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(11)
    return official_gfv()


def _check_outputs(model: nn.Module, gfv: nn.Module, policy: nn.Module, seed: int = 0):
    """Converted vs official reference on the same clips: ``(our logits, official top-left offsets)``."""
    glance, focus = _clips(seed=seed)
    with torch.no_grad():
        ref, coord = official_forward(gfv, policy, glance, focus)
        out = model.eval()(focus, glance_input=glance)  # the official loader samples the glance frames apart
    torch.testing.assert_close(out.prediction, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(out.offsets, coord.long().unsqueeze(1).expand(-1, TL, 2))  # one crop for all 12 frames
    return out.prediction, coord


def test_every_key_is_placed_and_outputs_equal_the_official_forward(official):
    gfv, policy = official
    ckpt = checkpoint(gfv, policy)
    assert is_official_tsm(ckpt)
    res = convert_official_tsm_checkpoint(ckpt, patch_size=P, input_size=SIZE)
    assert not res.dropped and not res.missing and len(res.mapped) == _n_official(ckpt)
    assert set(res.mapped.values()) == set(res.model.state_dict())  # every adafocus tensor filled
    cfg = res.config
    assert (cfg["global_backbone"], cfg["local_backbone"]) == ("tsm_mobilenet_v2", "tsm_resnet18")
    assert (cfg["num_classes"], cfg["global_frames"], cfg["local_frames"], cfg["decisions_per_video"]) == (K, TG, TL, 1)
    assert (cfg["policy_channels"], cfg["policy_hidden_dim"], cfg["policy_batch_norm"]) == (CH, HID, True)
    logits, coord = _check_outputs(res.model, gfv, policy)
    assert (coord.max() - coord.min()).item() >= 8  # the crops really move
    shifts = [m for m in gfv.modules() if isinstance(m, TemporalShiftStandIn)]
    try:  # the reference is not circular: without its shifts (fold 0: no channel moves) the logits differ
        for m in shifts:
            m.fold_div = 10**6
        with torch.no_grad():
            unshifted = official_forward(gfv, policy, *_clips())[0]
    finally:
        for m in shifts:
            m.fold_div = 8
    assert _max_diff(logits, unshifted) > 1e-3


def test_named_trunk_layout_drops_the_imagenet_head():
    torch.manual_seed(12)
    gfv, policy = official_gfv(sequential=False)  # a GFV saved without the scripts' Sequential(children[:-1])
    ckpt = checkpoint(gfv, policy)
    del ckpt["model_state_dict"]  # evaluate.py reads only the entries
    ckpt["args"] = argparse.Namespace(patch_size=P, input_size=SIZE, num_segments_focuser=TL, video_div=1)
    res = convert_official_tsm_checkpoint(ckpt)  # sizes from the saved args
    assert sorted(res.dropped) == ["focuser.net.base_model.fc.bias", "focuser.net.base_model.fc.weight"]
    assert len(res.mapped) == _n_official(ckpt) - len(res.dropped)
    assert res.mapped["focuser.net.base_model.layer1.0.conv1.net.weight"] == "local_cnn.model.layer1.0.conv1.net.weight"
    _check_outputs(res.model, gfv, policy, seed=1)


def _refused(ckpt: dict, match: str, **kw) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        convert_official_tsm_checkpoint(ckpt, **{"patch_size": P, "input_size": SIZE, "source": "sth_v1.pth", **kw})
    msg = str(info.value)
    assert "\n" not in msg and "sth_v1.pth" in msg, msg
    return msg


def test_renamed_wrong_shape_and_unsupported_files_are_one_line_errors(official):
    gfv, policy = official
    base = checkpoint(gfv, policy)
    del base["model_state_dict"]
    foc = dict(base["focuser"])
    foc["net.base_model.5.1.conv1.weight"] = foc.pop("net.base_model.5.1.conv1.net.weight")  # shift wrapper lost
    _refused({**base, "focuser": foc}, r"no place.*focuser\.net\.base_model\.5\.1\.conv1\.weight.*not in the "
             r"checkpoint.*local_cnn\.model\.layer2\.1\.conv1\.net\.weight")  # fmt: skip
    gla = dict(base["glancer"], **{"net.features.3.conv.3.weight": torch.zeros(1, 1, 3, 3)})
    _refused({**base, "glancer": gla}, r"shape mismatch.*glancer\.net\.features\.3\.conv\.3\.weight")
    _refused({**base, "policy": {**base["policy"], "state_encoder.9.weight": torch.zeros(2)}},
             r"no place.*policy\.state_encoder\.9\.weight")  # fmt: skip
    odd = {**base["policy"], "actor.0.weight": torch.zeros(24, HID), "actor.0.bias": torch.zeros(24)}
    _refused({**base, "policy": odd}, r"24 discrete actions are not a square grid")
    _refused({k: v for k, v in base.items() if k != "policy"}, r"no 'policy' entry")
    _refused(base, "patch_size is not stored", patch_size=None)
    _refused(base, r"2x2 glance map.*--input-size, 64", input_size=224)
    _refused({**base, "args": {"shift_div": 4}}, r"args\.shift_div=4")
    stale = checkpoint(gfv, policy)
    stale["fc"] = {k: v + 1 for k, v in stale["fc"].items()}
    _refused(stale, r"'fc' entry's weight differs from model_state_dict's classifier\.weight")


def test_cli_converts_a_sthsth_file_with_only_the_patch_size(official, tmp_path, capsys):
    gfv, policy = official
    src, out = tmp_path / "sthv1_p32.pth.tar", tmp_path / "converted.pt"
    ckpt = checkpoint(gfv, policy)
    torch.save(ckpt, src)
    argv = ["convert-official", str(src), "--out", str(out), "--patch-size", str(P), "--input-size", str(SIZE)]
    assert main(argv) == 0
    assert f"converted {_n_official(ckpt)} tensors" in capsys.readouterr().out
    _check_outputs(load_model(out), gfv, policy, seed=2)
    bad = tmp_path / "bad.pth.tar"
    ckpt["policy"] = dict(ckpt["policy"])
    ckpt["policy"]["gru.wieght_hh_l0"] = ckpt["policy"].pop("gru.weight_hh_l0")
    torch.save(ckpt, bad)
    assert main([*argv[:1], str(bad), "--out", str(tmp_path / "x.pt"), *argv[4:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "gru.wieght_hh_l0" in err[0], err
    assert not (tmp_path / "x.pt").exists()


def test_a_file_with_a_foreign_object_is_refused_unread(official, tmp_path):
    gfv, policy = official
    src = tmp_path / "trap.pth.tar"
    Trap.ran = False  # shared with the other tests that trust it
    torch.save({**checkpoint(gfv, policy), "hook": Trap()}, src)
    with pytest.raises(CheckpointError, match=r"trap\.pth\.tar: refused.*Trap") as info:
        convert_official_tsm_checkpoint(src, patch_size=P, input_size=SIZE)
    assert not Trap.ran and "\n" not in str(info.value)
    res = convert_official_tsm_checkpoint(src, patch_size=P, input_size=SIZE, trust=True)
    assert Trap.ran and len(res.mapped) == _n_official(checkpoint(gfv, policy))  # trusted: unpickled, converted


def test_discrete_ppo_files_convert_to_the_categorical_policy(official):
    """ppo.ActorCritic (ppo_continuous=False): actor = Linear + Softmax over 25 candidates, BN in the encoder;
    official eval takes the most probable one from ``standard_actions_set[25]`` = ``(i/4, j/4)`` row-major."""
    gfv, _ = official
    torch.manual_seed(5)
    policy = ActorCriticStandIn()
    policy.actor = nn.Sequential(nn.Linear(HID, 25), nn.Softmax(dim=-1))
    with torch.no_grad():
        policy.actor[0].weight.mul_(20)  # spread the choices over the grid
        for bn in (policy.state_encoder[1], policy.state_encoder[5]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    policy.eval()
    res = convert_official_tsm_checkpoint(checkpoint(gfv, policy), patch_size=P, input_size=SIZE)
    assert (res.config["policy_type"], res.config["grid_size"], res.config["policy_batch_norm"]) == (
        "categorical",
        5,
        True,
    )
    assert len(res.mapped) == _n_official(checkpoint(gfv, policy))
    grid = torch.tensor([[i / 4, j / 4] for i in range(5) for j in range(5)])
    glance, focus = _clips(b=4, seed=3)
    with torch.no_grad():
        fmap = gfv.glancer.net.features(glance.reshape(4 * TG, 3, SIZE, SIZE))
        out, _ = policy.gru(policy.state_encoder(fmap.view(4, TG * D_G, SIDE, SIDE)).view(1, 4, HID))
        action = grid[policy.actor(out[0]).argmax(-1)]
        ours = res.model.eval()(focus, glance_input=glance)
    assert torch.equal(ours.locations[:, 0], action)
    assert torch.equal(ours.offsets[:, 0], torch.floor(action * (SIZE - P)).long())
    assert len({tuple(a.tolist()) for a in action}) > 1
