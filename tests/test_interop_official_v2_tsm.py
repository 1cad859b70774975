"""Official AdaFocusV2 Sth-Sth / Jester checkpoints -> AdaFocusV2TSM: key placement, errors, equal outputs.

The stand-ins below reproduce only the *naming and shapes* of the official modules of
LeapLabTHU/AdaFocusV2 "Experiments on Sth-Sth and Jester" (main.py AdaFocus with ``policy_stn``;
ops/models.py TSN with ``base_model`` / ``new_fc`` / ``new_new_fc``; archs/mobilenet_v2.py, whose
InvertedResidual numbers its layers ``conv.0..7``; ops/temporal_shift.py TemporalShift, which wraps
a conv as ``.net``), built from torchvision / torch.nn modules, with small policy widths (the
official code fixes 64 / 1024 / 512) and 64-pixel frames. ``TemporalShiftStandIn`` writes the
official shift out; ``official_forward`` is a hand-written reference of the official eval forward
(TSN glance on the glance frames, ``policy_stn`` on their stacked maps, one ``get_patch_grid`` crop
for every focus frame, TSN focus, ``global_logit + local_logit``).
"""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from test_interop_official_v2 import InvertedResidualStandIn, MobileNetV2StandIn
from torch import nn

from adafocus import load_model
from adafocus.cli import main
from adafocus.errors import CheckpointError
from adafocus.interop import convert_official_uni_checkpoint, convert_official_v2_checkpoint
from adafocus.interop.official_v2_tsm import convert_official_v2_tsm_checkpoint, is_official_v2_tsm

K, T, SIZE, P, CH, HID, HEAD = 5, 4, 64, 32, 8, 16, 8
TL = int(T * 1.5)  # the official local_CNN's segments


class TemporalShiftStandIn(nn.Module):
    """Official TemporalShift (inplace=False): 1/8 of the channels from frame t+1, 1/8 from t-1, zeros at the ends."""

    def __init__(self, net: nn.Module, n_segment: int, n_div: int = 8) -> None:
        super().__init__()
        self.net, self.n_segment, self.fold_div = net, n_segment, n_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        x = x.view(nt // self.n_segment, self.n_segment, c, h, w)
        fold = c // self.fold_div
        out = torch.zeros_like(x)
        out[:, :-1, :fold] = x[:, 1:, :fold]
        out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]
        out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
        return self.net(out.view(nt, c, h, w))


def tsn(base: str, segments: int, shift: bool) -> nn.Module:
    """The official TSN (dropout > 0): ``base_model`` with its head replaced by Dropout, ``new_fc``, ``new_new_fc``."""
    m = nn.Module()
    if base == "mobilenetv2":
        m.base_model = MobileNetV2StandIn(1)  # the tonylins layout, its head replaced as TSN does
        m.base_model.classifier = nn.Dropout(0.5)
        for blk in m.base_model.modules():  # official TSN: shift where len(conv) == 8 and use_res_connect
            if shift and isinstance(blk, InvertedResidualStandIn) and len(blk.conv) == 8 and blk.residual:
                blk.conv[0] = TemporalShiftStandIn(blk.conv[0], segments)
        dim = 1280
    else:
        m.base_model = torchvision.models.resnet50()
        m.base_model.fc = nn.Dropout(0.5)
        for layer in (m.base_model.layer1, m.base_model.layer2, m.base_model.layer3, m.base_model.layer4):
            for blk in layer if shift else ():  # make_temporal_shift(place="blockres"), n_round 1
                blk.conv1 = TemporalShiftStandIn(blk.conv1, segments)
        dim = 2048
    m.new_fc, m.new_new_fc = nn.Linear(dim, K), nn.Linear(dim, K)
    return m


def get_patch_grid(frames: torch.Tensor, action: torch.Tensor, size: int, p: int) -> torch.Tensor:
    """Official main.get_patch_grid: one window per video over all its stacked frames (channels)."""
    x1, y1 = action[:, 1] * (size - p), action[:, 0] * (size - p)
    theta = frames.new_zeros(len(frames), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = p / size
    theta[:, 0, 2], theta[:, 1, 2] = -1 + (2 * x1 + p) / size, -1 + (2 * y1 + p) / size
    grid = F.affine_grid(theta, [len(frames), 3, p, p], align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def official_forward(m: nn.Module, glance: torch.Tensor, focus: torch.Tensor) -> dict[str, torch.Tensor]:
    """Official AdaFocus.forward (eval) on glance ``(B, T, 3, H, W)`` and focus ``(B, TL, 3, H, W)`` frames."""
    b = glance.shape[0]
    fmap = m.global_CNN.base_model.features(glance.reshape(b * T, 3, SIZE, SIZE))
    g = fmap.mean(3).mean(2)
    action = m.policy_stn(fmap.view(b, T * 1280, *fmap.shape[-2:]))
    patches = get_patch_grid(focus.reshape(b, TL * 3, SIZE, SIZE), action, SIZE, P).view(b * TL, 3, P, P)
    rn = m.local_CNN.base_model
    x = rn.maxpool(rn.relu(rn.bn1(rn.conv1(patches))))
    local = rn.avgpool(rn.layer4(rn.layer3(rn.layer2(rn.layer1(x))))).flatten(1)

    def consensus(head: nn.Module, feats: torch.Tensor, n: int) -> torch.Tensor:
        return head(feats).view(b, n, K).mean(1)

    return dict(logits=consensus(m.global_CNN.new_fc, g, T) + consensus(m.local_CNN.new_fc, local, TL),
                global_reg=consensus(m.global_CNN.new_new_fc, g, T),
                local_reg=consensus(m.local_CNN.new_new_fc, local, TL), action=action)  # fmt: skip


def official_adafocus(shift: bool = True) -> nn.Module:
    """The official module tree, random weights and random BN statistics near the activations' own."""
    m = nn.Module()
    m.global_CNN, m.local_CNN = tsn("mobilenetv2", T, shift), tsn("resnet50", TL, shift)
    side = SIZE // 32
    m.policy_stn = nn.Sequential(
        nn.Conv2d(T * 1280, CH, 1, bias=False), nn.BatchNorm2d(CH), nn.Tanh(), nn.Flatten(),
        nn.Linear(CH * side * side, HID), nn.BatchNorm1d(HID), nn.Tanh(),
        nn.Linear(HID, HEAD), nn.BatchNorm1d(HEAD), nn.Tanh(), nn.Linear(HEAD, 2), nn.Sigmoid(),
    )  # fmt: skip
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(0, 0.1)
            bn.momentum = None  # running stats = the average over the calibration batch
        official_forward(m.train(), torch.randn(2, T, 3, SIZE, SIZE), torch.randn(2, TL, 3, SIZE, SIZE))
        for bn in bns:  # then random statistics near those
            bn.running_mean.add_(torch.randn_like(bn.running_mean) * 0.1 * bn.running_var.sqrt())
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.7, 1.3))
            bn.momentum = 0.1
        m.policy_stn[10].weight.mul_(8.0)  # spread the locations over the frame
        for head in (m.global_CNN.new_fc, m.global_CNN.new_new_fc, m.local_CNN.new_fc, m.local_CNN.new_new_fc):
            head.bias.normal_(0, 1.0)  # the folded biases must really count
    return m.eval()


def checkpoint(m: nn.Module) -> dict:
    """What the official main.py saves (its optimizer state left out)."""
    sd = {"module." + k: v for k, v in m.state_dict().items()}
    return {"epoch": 3, "arch": "resnet50", "state_dict": sd, "best_prec1": 60.5}


@pytest.fixture(scope="module")
def official() -> nn.Module:
    torch.manual_seed(7)
    return official_adafocus()


def _clips(b: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, T, 3, SIZE, SIZE, generator=gen), torch.randn(b, TL, 3, SIZE, SIZE, generator=gen)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_every_key_is_placed_and_outputs_equal_the_official_forward(official):
    res = convert_official_v2_tsm_checkpoint(checkpoint(official), patch_size=P, input_size=SIZE)
    assert set(res.mapped) == set(official.state_dict()) and not res.dropped and not res.missing
    assert set(res.mapped.values()) == set(res.model.state_dict())  # every adafocus tensor filled
    cfg = res.config
    assert (cfg["global_backbone"], cfg["local_backbone"]) == ("tsm_mobilenet_v2", "tsm_resnet50")
    assert (cfg["num_classes"], cfg["global_frames"], cfg["local_frames"]) == (K, T, TL)
    assert (cfg["policy_channels"], cfg["policy_hidden_dim"], cfg["policy_head_dim"]) == (CH, HID, HEAD)
    glance, focus = _clips()
    model = res.model.eval()
    with torch.no_grad():
        ref = official_forward(official, glance, focus)
        out = model(focus, glance_input=glance)  # the official loader samples the glance frames apart
        g_aux, l_aux = model.auxiliary_logits(out)
    assert ref["action"].max() - ref["action"].min() > 0.3  # the crops really move
    locations = ref["action"].unsqueeze(1).expand(-1, TL, 2)
    diffs = {"logits": _max_diff(out.prediction, ref["logits"]), "locations": _max_diff(out.locations, locations),
             "global_reg": _max_diff(g_aux.mean(1), ref["global_reg"]),
             "local_reg": _max_diff(l_aux.mean(1), ref["local_reg"])}  # fmt: skip
    print(f"largest |converted - official reference| {diffs}")
    assert out.logits.shape == (3, 1, K) and max(diffs.values()) < 1e-5, diffs
    shifts = [mod for mod in official.modules() if isinstance(mod, TemporalShiftStandIn)]
    try:  # the reference is not circular: without its shifts (fold 0: no channel moves) it differs
        for mod in shifts:
            mod.fold_div = 10**6
        with torch.no_grad():
            unshifted = official_forward(official, glance, focus)["logits"]
    finally:
        for mod in shifts:
            mod.fold_div = 8
    assert _max_diff(out.prediction, unshifted) > 1e-3


def test_a_run_without_shift_gets_plain_backbones(official):
    m = nn.Module()  # the same weights in the official tree built without --shift (no ".net" wrappers)
    m.global_CNN, m.local_CNN = tsn("mobilenetv2", T, False), tsn("resnet50", TL, False)
    m.policy_stn = official.policy_stn
    m.load_state_dict({k.replace(".net.", "."): v for k, v in official.state_dict().items()})
    res = convert_official_v2_tsm_checkpoint({"state_dict": m.state_dict()}, patch_size=P, input_size=SIZE)
    assert (res.config["global_backbone"], res.config["local_backbone"]) == ("mobilenet_v2", "resnet50")
    glance, focus = _clips(2, seed=1)
    with torch.no_grad():
        got = res.model.eval()(focus, glance_input=glance).prediction
        assert _max_diff(got, official_forward(m.eval(), glance, focus)["logits"]) < 1e-5


def _refused(ckpt: dict, match: str, **kw) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        convert_official_v2_tsm_checkpoint(ckpt, **{"patch_size": P, "input_size": SIZE, "source": "sthv2.pth", **kw})
    msg = str(info.value)
    assert "\n" not in msg and "sthv2.pth" in msg, msg
    return msg


def test_renamed_missing_and_wrong_shape_keys_are_one_line_errors(official):
    base = checkpoint(official)["state_dict"]
    conv1 = "module.local_CNN.base_model.layer2.1.conv1.net.weight"
    renamed = {k.replace("conv1.net.weight", "conv1.weight") if k == conv1 else k: v for k, v in base.items()}
    _refused({"state_dict": renamed}, r"no place.*layer2\.1\.conv1\.weight.*not in the checkpoint.*"
             r"local_cnn\.model\.layer2\.1\.conv1\.net\.weight")  # fmt: skip
    dw = "module.global_CNN.base_model.features.3.conv.3.weight"
    _refused({"state_dict": {**base, dw: torch.zeros(1, 1, 3, 3)}}, r"shape mismatch.*features\.3\.conv\.3\.weight")
    extra = {**base, "module.policy_stn.12.weight": torch.zeros(2)}
    _refused({"state_dict": extra}, r"no place.*policy_stn\.12\.weight")
    _refused({"state_dict": {k: v for k, v in base.items() if "global_CNN.new_fc.bias" not in k}},
             r"lacks global_CNN\.new_fc\.bias")  # fmt: skip
    _refused({"state_dict": base}, "patch_size is not stored", patch_size=None)
    _refused({"state_dict": base}, r"2x2 glance map.*--input-size, 64", input_size=224)
    with pytest.raises(CheckpointError, match=r"Sth-Sth/Jester.*convert_official_v2_tsm_checkpoint"):
        convert_official_v2_checkpoint({"state_dict": base}, patch_size=P, input_size=SIZE)


def test_cli_recognises_a_sthsth_file(official, tmp_path, capsys):
    src, out = tmp_path / "sthv2_p32.pth.tar", tmp_path / "converted.pt"
    ckpt = checkpoint(official)
    assert is_official_v2_tsm(ckpt)
    torch.save(ckpt, src)
    argv = ["convert-official", str(src), "--out", str(out), "--patch-size", str(P), "--input-size", str(SIZE)]
    assert main(argv) == 0
    assert f"converted {len(official.state_dict())} tensors" in capsys.readouterr().out
    model = load_model(out)
    glance, focus = _clips(2, seed=2)
    with torch.no_grad():
        got = model(focus, glance_input=glance).prediction
        assert _max_diff(got, official_forward(official, glance, focus)["logits"]) < 1e-4
    bad = tmp_path / "bad.pth.tar"
    sd = dict(ckpt["state_dict"])
    sd["module.policy_stn.7.wieght"] = sd.pop("module.policy_stn.7.weight")
    torch.save({"state_dict": sd}, bad)
    assert main(["convert-official", str(bad), "--out", str(tmp_path / "x.pt"), "--patch-size", str(P),
                 "--input-size", str(SIZE)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "policy_stn.7.wieght" in err[0], err
    assert not (tmp_path / "x.pt").exists()


def test_uni_adafocus_tsm_files_are_refused_with_one_line(tmp_path, capsys):
    keys = ("global_CNN.base_model.features.0.0.weight", "aux_fc.weight", "local_CNN.base_model.conv1.weight",
            "spatial_policy.encoder.0.weight", "temporal_policy.Tconv.0.weight")  # fmt: skip
    sd = {f"module.{k}": torch.zeros(1) for k in keys}
    with pytest.raises(CheckpointError, match=r"Uni-AdaFocus-TSM.*no model") as info:
        convert_official_uni_checkpoint({"state_dict": sd}, patch_size=P)
    assert "\n" not in str(info.value)
    src = tmp_path / "uni_sthv2.pth.tar"
    torch.save({"state_dict": sd}, src)
    assert main(["convert-official", str(src), "--out", str(tmp_path / "u.pt"), "--patch-size", str(P)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Uni-AdaFocus-TSM" in err[0], err
