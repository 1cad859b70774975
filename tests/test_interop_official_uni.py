"""Official Uni-AdaFocus checkpoints -> UniAdaFocus: key placement, errors, safe loading, equal outputs.

The stand-in below reproduces only the *naming and shapes* of the official modules of
LeapLabTHU/Uni-AdaFocus "Uni-AdaFocus with Experiments on ActivityNet, FCVID and Mini-Kinetics"
(models/uni_adafocus.py AdaFocus / SpatialPolicy / TemporalPolicy / PoolingClassifier /
MultiLayerPerceptron; their MobileNet-V2, shared with the AdaFocusV2 stand-in; their resnet.py, which
has torchvision's names), with small widths (the official code fixes a 4096-wide classifier and a
(1, 7, 7) last spatial kernel for 224-pixel frames; the converter reads both from the shapes).
``official_forward`` is a hand-written reference of the official eval forward. Where the official
code hard-codes 224 and 96 (``get_patch_grid_scalexy``'s window sides) the reference uses SIZE and
MIN_SIDE, and where its auxiliary crop hard-codes a 7 x 7 map, the map side (here 2).
"""

import argparse
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import Trap
from test_interop_official_v2 import MobileNetV2StandIn, _max_diff, _resnet_trunk, checkpoint
from torch import nn

from adafocus import UniAdaFocus, load_model
from adafocus.cli import main
from adafocus.errors import CheckpointError
from adafocus.interop import convert_official_uni_checkpoint, is_official_uni, is_official_v2, load_official_checkpoint
from adafocus.models.crop import sample_patches
from adafocus.models.uni_adafocus import mc_frame_logits

K, SIZE, P, N, G, FOC, MIN_SIDE = 5, 64, 32, 12, 4, 4, 24
SHID, THID, CLS = 8, 8, 24  # official: --stn_hidden_dim 128, --temporal_hidden_dim 64, the fixed 4096
SIDE = SIZE // 32  # e_G's map side (official 7)
D_G, D_L = 1280, 2048


def official_uni(temperature: float = 1.0) -> nn.Module:
    """The official Uni-AdaFocus ``AdaFocus`` module tree (names and shapes), random weights and BN statistics."""
    m = nn.Module()
    m.global_CNN = MobileNetV2StandIn(K)
    m.global_CNN_fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(D_G, K))
    m.aux_fc = nn.Linear(D_G, K)
    m.local_CNN = torchvision.models.resnet50(num_classes=K)
    m.local_CNN_fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(D_L, K))
    m.spatial_policy = nn.Module()
    m.spatial_policy.encoder = nn.Sequential(
        nn.Conv3d(D_G, SHID, 1, bias=False), nn.BatchNorm3d(SHID), nn.ReLU(),
        nn.Conv3d(SHID, SHID, 3, padding=1, bias=False), nn.BatchNorm3d(SHID), nn.ReLU(),
        nn.Conv3d(SHID, SHID, 3, padding=1, bias=False), nn.BatchNorm3d(SHID), nn.ReLU(),
        nn.Conv3d(SHID, 4, (1, SIDE, SIDE), bias=False), nn.Sigmoid(),
    )  # fmt: skip
    m.temporal_policy = nn.Module()
    m.temporal_policy.Tconv = nn.Sequential(
        nn.Conv2d(D_G, THID, (3, 1), padding=(1, 0), bias=False), nn.BatchNorm2d(THID), nn.ReLU(),
        nn.Conv2d(THID, THID, (3, 1), padding=(1, 0), bias=False), nn.BatchNorm2d(THID), nn.ReLU(),
        nn.Conv2d(THID, 1, 1, bias=False),
    )  # fmt: skip
    m.temporal_policy.T = temperature  # not a weight (the official args.temperature)
    m.classifier = nn.Module()
    for name, d in (("global_mlp", D_G), ("local_mlp", D_L)):
        mlp = nn.Module()
        mlp.layers = nn.Sequential(nn.Linear(d, CLS), nn.BatchNorm1d(CLS), nn.ReLU())
        setattr(m.classifier, name, mlp)
    m.classifier.global_classifiers = nn.ModuleList(nn.Sequential(nn.Dropout(0.2), nn.Linear(CLS, K)) for _ in range(G))
    m.classifier.local_classifiers = nn.ModuleList(
        nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * CLS, K)) for _ in range(FOC)
    )
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(0, 0.1)
            bn.momentum = None  # running stats = the average over the calibration batches
        official_forward(m.train(), torch.randn(4, N, 3, SIZE, SIZE))  # activations keep their scale
        for bn in bns:  # then random statistics near those
            bn.running_mean.add_(torch.randn_like(bn.running_mean) * 0.1 * bn.running_var.sqrt())
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.7, 1.3))
            bn.momentum = 0.1
        m.spatial_policy.encoder[9].weight.mul_(6.0)  # spread the corners and sides over their range
        m.temporal_policy.Tconv[6].weight.mul_(6.0)  # uneven frame weights: the frames really move
    return m.eval()


def official_patch_grid(
    images, actions, patch_size: int, image_size: int, input_patch_size: int, sizes=(SIZE, MIN_SIDE)
):
    """The official get_patch_grid_scalexy with its hard-coded 224 / 96 read as ``sizes`` (SIZE / MIN_SIDE);
    also returns the window's top-left corner and sides (pixels, (y, x)). In the input's dtype (the
    official casts theta to float32)."""
    big, small = sizes
    scale = actions[:, 2:4] * (big - small) / input_patch_size + small / input_patch_size
    corner = actions[:, :2] * (image_size - patch_size * scale)
    x1, x2 = corner[:, 1], corner[:, 1] + patch_size * scale[:, 1]
    y1, y2 = corner[:, 0], corner[:, 0] + patch_size * scale[:, 0]
    theta = images.new_zeros(len(images), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = patch_size * scale[:, 1] / image_size, patch_size * scale[:, 0] / image_size
    theta[:, 0, 2], theta[:, 1, 2] = -1 + (x1 + x2) / image_size, -1 + (y1 + y2) / image_size
    grid = F.affine_grid(theta, [len(images), 3, patch_size, patch_size], align_corners=False)
    patches = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return patches, corner, patch_size * scale


def official_sample_indices(weights: torch.Tensor) -> torch.Tensor:
    """The official policy_sample_indices(rand_sample=False), without the batch offset: ``(B, F)``."""
    b = len(weights)
    integrated = torch.cat([weights.new_zeros(b, 1), weights.cumsum(dim=1)], dim=1)
    integrated[:, -1] = 1.0
    threshold = (torch.arange(0, FOC).float().repeat(b, 1) + 0.5) / FOC
    first = (integrated.unsqueeze(2) >= threshold.unsqueeze(1)).max(dim=1)[1].clamp(1, G) - 1
    x1, y1 = first / G, integrated.gather(1, first)
    x2, y2 = (first + 1) / G, integrated.gather(1, first + 1)
    quantile = (x2 * (threshold - y1) - x1 * (threshold - y2)) / (y2 - y1)  # cal_x
    idx = torch.floor(quantile * N).long()
    for i in range(1, FOC):
        idx[:, i] = torch.where(idx[:, i].gt(idx[:, i - 1]), idx[:, i], idx[:, i - 1] + 1)
    lim = (N - FOC + torch.arange(0, FOC)).unsqueeze(0)
    return torch.where(idx.gt(lim), lim, idx)


@torch.no_grad()
def official_forward(m: nn.Module, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official AdaFocus.forward in eval mode on ``(B, N, 3, H, W)`` clips, returning what it returns
    (the logits per step, global / local / temporal / spatial logits, weights) and the frames and windows."""
    b = frames.shape[0]
    times = N // G
    glance = torch.arange(N)[1::times].repeat(b, 1)
    images = frames.reshape(-1, 3, SIZE, SIZE)
    fmap = m.global_CNN.features(images[(glance + torch.arange(b).unsqueeze(1) * N).view(-1)])  # get_featmap
    g = fmap.mean([2, 3])
    global_logits = m.global_CNN_fc(g)
    # SpatialPolicy on the detached maps, interpolated to every frame
    feats = fmap.reshape(b, G, *fmap.shape[1:]).permute(0, 2, 1, 3, 4)
    per_glance = m.spatial_policy.encoder(feats).flatten(2).permute(0, 2, 1).reshape(b * G, 4)
    actions = F.interpolate(per_glance.view(b, G, 4).permute(0, 2, 1), N, mode="linear", align_corners=False)
    actions = actions.permute(0, 2, 1).reshape(-1, 4)
    # TemporalPolicy
    x = m.temporal_policy.Tconv(g.reshape(b, G, D_G).permute(0, 2, 1).unsqueeze(-1)).flatten(1)
    weights, weights_t = torch.softmax(x, 1), torch.softmax(x / m.temporal_policy.T, 1)
    # MCSampleFeature with T1 = G // 3 = 1: its one draw drops no frame (deterministic)
    lg = global_logits.view(b, G, K)
    temporal_logits = (lg * weights.unsqueeze(-1)).sum(1) / weights.sum(1).unsqueeze(-1)
    # the auxiliary crop of e_G's map (image_size 7 -> SIDE, patch_size // 32 as official)
    aux, _, _ = official_patch_grid(fmap, per_glance, P // 32, SIDE, P)
    spatial_logits = m.aux_fc(aux.view(b, G, D_G, P // 32, P // 32).mean(dim=[1, 3, 4]))
    # frames, windows, the local CNN
    focus = official_sample_indices(weights_t)
    flat = (focus + torch.arange(b).unsqueeze(1) * N).view(-1)
    patches, corner, sides = official_patch_grid(images[flat], actions[flat], P, SIZE, P)
    local = m.local_CNN.avgpool(_resnet_trunk(m.local_CNN, patches)).flatten(1)  # get_featvec
    local_logits = m.local_CNN_fc(local)
    # PoolingClassifier
    z1 = m.classifier.global_mlp.layers(g).view(b, G, -1)
    z2 = m.classifier.local_mlp.layers(local).view(b, FOC, -1)
    logits, cur1, cur2 = [], z1[:, 0], z2[:, 0]
    for i in range(G):
        cur1 = cur1 if i == 0 else torch.stack([z1[:, i], cur1], 1).max(dim=1)[0]
        logits.append(m.classifier.global_classifiers[i](cur1))
    for i in range(FOC):
        cur2 = cur2 if i == 0 else torch.stack([z2[:, i], cur2], 1).max(dim=1)[0]
        logits.append(m.classifier.local_classifiers[i](torch.cat([cur2, cur1], 1)))
    return dict(
        logits=torch.stack(logits, 1), glance_indices=glance, frame_indices=focus, weights=weights,
        locations=actions[flat, :2].view(b, FOC, 2), corners=corner.view(b, FOC, 2), sides=sides.view(b, FOC, 2),
        global_logits=lg, local_logits=local_logits.view(b, FOC, K), temporal_logits=temporal_logits,
        spatial_logits=spatial_logits,
    )  # fmt: skip


def official_file(m: nn.Module, **extra) -> dict:
    """What the official main.py saves (DDP: keys prefixed ``module.``)."""
    optimizer = {"state": {}, "param_groups": [{"lr": 0.002, "momentum": 0.9, "lr_mult": 0.2, "decay_mult": 1,
                                                "name": "temporal_policy", "params": [0, 1]}]}  # fmt: skip
    return {"epoch": 50, **checkpoint(m), "optimizer": optimizer, "best_acc1": 80.7, **extra}


def ours(model: UniAdaFocus, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(frames)
        return dict(
            logits=out.logits, glance_indices=out.glance_indices, frame_indices=out.frame_indices,
            weights=out.frame_weights, locations=out.locations, corners=out.locations * (SIZE - out.window_sides),
            sides=out.window_sides, global_logits=model.global_fc(out.global_features),
            local_logits=model.local_fc(out.local_features),
            temporal_logits=mc_frame_logits(model.global_fc(out.global_features), out.frame_weights, drops=1),
            spatial_logits=model.auxiliary_crop_logits(out.feature_maps, model.spatial_policy(out.feature_maps)),
            offsets=out.offsets,
        )  # fmt: skip


@pytest.fixture(scope="module")
def official() -> nn.Module:
    torch.manual_seed(5)
    return official_uni()


def test_every_key_is_placed_and_outputs_equal_the_official_forward(official):
    m = official
    res = convert_official_uni_checkpoint(official_file(m), patch_size=P, input_size=SIZE, num_segments=N,
                                          min_side=MIN_SIDE)  # fmt: skip
    official_keys = set(m.state_dict())
    assert set(res.mapped) | set(res.dropped) == official_keys and not set(res.mapped) & set(res.dropped)
    assert set(res.mapped.values()) == set(res.model.state_dict())  # every adafocus tensor filled
    assert {k.rsplit(".", 1)[0] for k in res.dropped} == {"global_CNN.classifier", "local_CNN.fc"}
    assert not res.missing
    cfg = res.config
    assert (cfg["num_classes"], cfg["glance_segments"], cfg["focus_segments"], cfg["num_segments"]) == (K, G, FOC, N)
    assert (cfg["spatial_hidden_dim"], cfg["temporal_hidden_dim"], cfg["classifier_hidden_dim"]) == (SHID, THID, CLS)
    assert (cfg["global_backbone"], cfg["local_backbone"], cfg["patch_size"]) == ("mobilenet_v2", "resnet50", P)
    frames = torch.randn(3, N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float64, torch.float32):
        ref_net, model, x = copy.deepcopy(m).to(dtype), copy.deepcopy(res.model).eval().to(dtype), frames.to(dtype)
        ref, got = official_forward(ref_net, x), ours(model, x)
        # the policies really act: uneven frames, windows of different sides and places
        assert (ref["frame_indices"] != torch.tensor([1, 4, 7, 10])).any(), ref["frame_indices"]
        assert ref["sides"].max() - ref["sides"].min() > 10 and ref["locations"].max() - ref["locations"].min() > 0.3
        for name in ("glance_indices", "frame_indices"):
            assert torch.equal(got[name], ref[name]), (name, got[name], ref[name])
        assert torch.equal(got["offsets"], ref["corners"].floor().long())
        diffs = {k: _max_diff(got[k], v) for k, v in ref.items() if k not in ("glance_indices", "frame_indices")}
        print(f"{dtype}: largest |converted - official reference| {diffs}")
        # float64 proves the mapping (measured: 2e-12). In float32 the two crop formulas round apart (patches
        # ~3e-5, test_the_scaled_crop_samples_the_official_points) and the random ResNet-50 amplifies input
        # differences ~5e3-fold (measured: logits 1.1e-3, local logits 3.0e-3 of ~10); all else is bit-exact
        after_crop = ("logits", "local_logits") if dtype == torch.float32 else ()
        assert max(v for k, v in diffs.items() if k not in after_crop) < 1e-5, diffs
        assert all(diffs[k] < 2e-2 for k in after_crop), diffs


def test_the_scaled_crop_samples_the_official_points():
    for size, p, tol in ((SIZE, P, 1e-4), (224, 128, 1e-3)):
        actions = torch.rand(8, 4, generator=torch.Generator().manual_seed(1))
        actions[:4] = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.3, 0.9], [0.4, 0.5, 1, 0]])
        frames = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(2))
        for dtype, t in ((torch.float64, 1e-12), (torch.float32, tol)):
            a, x = actions.to(dtype), frames.to(dtype)
            ref, corner, sides = official_patch_grid(x, a, p, size, p, sizes=(size, MIN_SIDE))
            assert _max_diff(sides, MIN_SIDE + a[:, 2:] * (size - MIN_SIDE)) < t
            diff = _max_diff(sample_patches(x, a[:, :2], p, sides), ref)
            print(f"crop {size}/{p} {dtype}: largest |sample_patches - official crop| {diff:.2e}")
            assert diff < t


def _refused(path, match: str, **kw) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        convert_official_uni_checkpoint(path, **{"patch_size": P, "input_size": SIZE, "num_segments": N,
                                                 "min_side": MIN_SIDE, **kw})  # fmt: skip
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_unplaced_missing_and_wrong_shape_keys_are_one_line_errors(official, tmp_path):
    base = checkpoint(official)["state_dict"]
    tconv6, mean = "module.temporal_policy.Tconv.6.weight", "module.classifier.local_mlp.layers.1.running_mean"
    cases = {
        "extra": ({**base, "module.temporal_policy.extra.weight": torch.zeros(3)},
                  r"no place in UniAdaFocus.*temporal_policy\.extra\.weight"),
        "v2_key": ({**base, "module.policy_stn.fc.0.weight": torch.zeros(2)}, r"no place.*policy_stn\.fc\.0\.weight"),
        "missing": ({k: v for k, v in base.items() if k != "module.spatial_policy.encoder.4.running_var"},
                    r"not in the checkpoint.*spatial_policy\.encoder\.4\.running_var"),
        "shape": ({**base, mean: torch.zeros(CLS + 1)},
                  r"shape mismatch.*classifier\.local_mlp\.layers\.1\.running_mean \(25,\) -> "
                  r"classifier\.local_mlp\.1\.running_mean \(24,\)"),
        "renamed": ({**{k: v for k, v in base.items() if k != tconv6}, tconv6[:-6] + "wieght": base[tconv6]},
                    r"no place.*Tconv\.6\.wieght.*not in the checkpoint.*temporal_policy\.score\.6\.weight"),
        "config": ({k: v for k, v in base.items() if "global_mlp.layers.0.weight" not in k},
                   r"lacks classifier\.global_mlp\.layers\.0\.weight"),
        "heads": ({k: v for k, v in base.items() if ".local_classifiers.1." not in k},
                  r"local_classifiers\.\* heads are \[0, 2, 3\]"),
    }  # fmt: skip
    for name, (sd, match) in cases.items():
        path = tmp_path / f"{name}.pth.tar"
        torch.save({"state_dict": sd}, path)
        _refused(path, match)
    path = tmp_path / "ok.pth.tar"
    torch.save({"state_dict": base}, path)
    _refused(path, "patch_size is not stored", patch_size=None)
    _refused(path, r"2x2 glance map.*--input-size, 64", input_size=224)  # the spatial kernel says 64x64 frames
    _refused(path, r"num_segments=10 must be a multiple of glance_segments=4", num_segments=10)
    _refused(path, r"min_side=96 is larger than the frame", min_side=96)  # the official 96 on 64-pixel frames
    torch.save({"state_dict": {"module.policy_stn.gru.weight_hh_l0": torch.zeros(3, 1)}}, tmp_path / "v2.pth.tar")
    _refused(tmp_path / "v2.pth.tar", "not an official Uni-AdaFocus checkpoint")


def test_pickle_payload_is_refused_unless_trusted_and_args_are_read(official, tmp_path, monkeypatch):
    monkeypatch.setattr(Trap, "ran", False)
    args = argparse.Namespace(patch_size=P, input_size=SIZE, num_segments=N, num_glance_segments=G,
                              num_focus_segments=FOC, temperature=0.5, dropout=0.2, glance_arch="mbv2")  # fmt: skip
    torch.save(official_file(official, best_acc1=np.float64(80.7), args=args), tmp_path / "ok.pth.tar")
    loaded = load_official_checkpoint(tmp_path / "ok.pth.tar")
    assert is_official_uni(loaded) and not is_official_v2(loaded)
    res = convert_official_uni_checkpoint(tmp_path / "ok.pth.tar", min_side=MIN_SIDE)  # the rest from args
    assert (res.config["patch_size"], res.config["num_segments"], res.config["temperature"]) == (P, N, 0.5)
    hot = copy.deepcopy(official)
    hot.temporal_policy.T = 0.5
    frames = torch.randn(2, N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    ref, got = official_forward(hot.double(), frames.double()), ours(res.model.eval().double(), frames.double())
    assert torch.equal(got["frame_indices"], ref["frame_indices"]) and _max_diff(got["logits"], ref["logits"]) < 1e-5
    wrong = argparse.Namespace(**{**vars(args), "num_focus_segments": 16})
    torch.save(official_file(official, args=wrong), tmp_path / "wrong.pth.tar")
    _refused(tmp_path / "wrong.pth.tar", r"args\.num_focus_segments=16 but its classifier has 4 heads")
    Trap.ran = False  # shared with the other tests that trust it
    torch.save(official_file(official, evil=Trap()), tmp_path / "evil.pth.tar")
    msg = _refused(tmp_path / "evil.pth.tar", r"evil.pth.tar: refused.*Trap")
    assert "numpy" not in msg and not Trap.ran
    res = convert_official_uni_checkpoint(tmp_path / "evil.pth.tar", patch_size=P, input_size=SIZE, num_segments=N,
                                          min_side=MIN_SIDE, trust=True)  # fmt: skip
    assert Trap.ran and len(res.mapped) == len(official.state_dict()) - 4  # trusted: unpickled and converted


def test_cli_converts_a_uni_file_end_to_end(official, tmp_path, capsys):
    src, out = tmp_path / "actnet_p32.pth.tar", tmp_path / "converted.pt"
    torch.save(official_file(official), src)
    flags = ["--patch-size", str(P), "--input-size", str(SIZE), "--num-segments", str(N), "--min-side", str(MIN_SIDE)]
    assert main(["convert-official", str(src), "--out", str(out), *flags]) == 0
    printed = capsys.readouterr().out
    assert f"converted {len(official.state_dict()) - 4} tensors" in printed
    assert "['global_CNN.classifier', 'local_CNN.fc']" in printed
    model = load_model(out)
    assert isinstance(model, UniAdaFocus) and not model.training
    frames = torch.randn(1, N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = model.double()(frames.double()).logits
    assert _max_diff(got, official_forward(copy.deepcopy(official).double(), frames.double())["logits"]) < 1e-5
    bad = tmp_path / "bad.pth.tar"
    sd = checkpoint(official)["state_dict"]
    torch.save({"state_dict": {**sd, "module.aux_fc.weight": torch.zeros(K + 1, D_G)}}, bad)
    assert main(["convert-official", str(bad), "--out", str(tmp_path / "x.pt"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "aux_fc.weight" in err[0], err
    assert not (tmp_path / "x.pt").exists()
