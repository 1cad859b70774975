"""Official AdaFocus V1 ``consensus: fc`` checkpoints -> AdaFocus(classifier="fc_probs").

The stand-in reuses tests/test_interop_official.py's official module tree (names and shapes of
models/gfv_net.py GFV / Glancer / Focuser, models/ppo.py ActorCritic) with the classifier replaced by
the official ``LinearCLassifier``'s (one ``fc`` over ``[e_G, e_L]``). ``linear_classifier`` is a
hand-written reference of its forward (dropout, fc per frame, softmax per frame, mean of the
probabilities over the frames, log of the mean); the prediction after step t is that forward on
frames 1..t.
"""

import pytest
import torch
from test_interop_official import GRID, HIDDEN, SIZE, K, P, official_gfv
from torch import nn

from adafocus.errors import CheckpointError
from adafocus.interop import convert_official_checkpoint
from adafocus.training.reward import rollout

D_G, D_L = 1280, 2048


def official_fc_gfv(policy: bool = True) -> nn.Module:
    """The official GFV with ``consensus: fc`` (``policy=False``: a stage-I file, random patches)."""
    gfv = official_gfv()
    gfv.classifier = nn.Module()
    gfv.classifier.fc = nn.Linear(D_G + D_L, K)
    frames = torch.randn(2, 2, 3, SIZE, SIZE)
    feats = official_features(gfv, frames, torch.zeros(2, 2, 2, dtype=torch.int))
    with torch.no_grad():  # frame logits with a spread of ~3: averaging probabilities differs from logits
        gfv.classifier.fc.weight.mul_(3.0 / gfv.classifier.fc(feats).std())
    if not policy:
        del gfv.focuser.policy
    return gfv.eval()


def linear_classifier(fc: nn.Linear, features: torch.Tensor) -> torch.Tensor:
    """Official LinearCLassifier.forward (eval): ``log(mean_t softmax(fc(x_t)))`` over ``(B, T, F)``."""
    b, t, _ = features.shape
    softmax = torch.softmax(fc(features.reshape(b * t, -1)), dim=1).reshape(b, t, -1)
    return torch.log(softmax.mean(dim=1))


@torch.no_grad()
def official_features(gfv: nn.Module, frames: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``[e_G, e_L]`` per frame ``(B, T, D_G + D_L)``, the patch of frame t at pixel ``offsets[:, t]``."""
    b, t = frames.shape[:2]
    rn, feats = gfv.focuser.net, []
    for step in range(t):
        img, xy = frames[:, step], offsets[:, step]
        fmap = gfv.glancer.net.features(img)
        patches = torch.stack([img[i, :, xy[i, 0] : xy[i, 0] + P, xy[i, 1] : xy[i, 1] + P] for i in range(b)])
        x = rn.maxpool(rn.relu(rn.bn1(rn.conv1(patches))))
        local = rn.avgpool(rn.layer4(rn.layer3(rn.layer2(rn.layer1(x))))).view(b, -1)
        feats.append(torch.cat([fmap.mean([2, 3]), local], dim=1))
    return torch.stack(feats, 1)


@torch.no_grad()
def official_policy_offsets(gfv: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """The official policy's argmax patch per frame, ``floor(a * (H - P))`` pixels ``(B, T, 2)``."""
    b, t = frames.shape[:2]
    ac, h = gfv.focuser.policy.policy_old, torch.zeros(1, b, HIDDEN)
    table = torch.tensor([[i / (GRID - 1), j / (GRID - 1)] for i in range(GRID) for j in range(GRID)])
    coords = []
    for step in range(t):
        out, h = ac.gru(ac.state_encoder(gfv.glancer.net.features(frames[:, step])).view(1, b, -1), h)
        coords.append(torch.floor(table[ac.actor(out[0]).max(1)[1]] * (SIZE - P)).int())
    return torch.stack(coords, 1)


@pytest.fixture(scope="module")
def fc_gfv() -> nn.Module:
    torch.manual_seed(5)
    return official_fc_gfv()


def test_fc_checkpoint_converts_and_equals_the_official_linear_classifier(fc_gfv):
    res = convert_official_checkpoint({"model_state_dict": fc_gfv.state_dict()}, patch_size=P, input_size=SIZE)
    assert set(res.mapped) | set(res.dropped) == set(fc_gfv.state_dict()) and not res.missing
    assert res.mapped["classifier.fc.weight"] == "classifier.fc.weight"
    assert res.config["classifier"] == "fc_probs" and res.config["reuse_global"]
    model = res.model.eval()
    frames = torch.randn(2, 4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    offsets = official_policy_offsets(fc_gfv, frames)
    feats = official_features(fc_gfv, frames, offsets)
    ref = torch.stack([linear_classifier(fc_gfv.classifier.fc, feats[:, : t + 1]) for t in range(4)], 1)
    with torch.no_grad():
        out = model(frames)
        frame_mean = torch.log_softmax(fc_gfv.classifier.fc(feats), -1).mean(1)  # averaging logits instead
    torch.testing.assert_close(out.offsets.int(), offsets)
    torch.testing.assert_close(out.logits, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.prediction.softmax(-1), ref[:, -1].exp(), rtol=1e-4, atol=1e-5)  # the mean prob
    assert (frame_mean.log_softmax(-1) - ref[:, -1]).abs().max() > 1e-2  # so the mean of logits would be wrong
    state = model.init_state()  # online: the same running average
    with torch.no_grad():
        for t in range(4):
            step, state = model.step(frames[:, t], state)
            torch.testing.assert_close(step.logits, ref[:, t], rtol=1e-4, atol=1e-4)


def test_stage_one_fc_file_and_the_stage_two_reward(fc_gfv):
    stage1 = official_fc_gfv(policy=False)
    stage1.load_state_dict(fc_gfv.state_dict(), strict=False)
    with pytest.raises(CheckpointError, match=r"not in the checkpoint.*policy\.encoder.*allow_missing"):
        convert_official_checkpoint({"model_state_dict": stage1.state_dict()}, patch_size=P, input_size=SIZE)
    res = convert_official_checkpoint({"model_state_dict": stage1.state_dict()}, patch_size=P, input_size=SIZE,
                                      allow_missing=["policy."])  # fmt: skip
    assert res.missing and all(k.startswith("policy.") for k in res.missing)
    model = res.model.eval()
    frames = torch.randn(2, 3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    offsets = torch.tensor([[[0, 32], [17, 5], [32, 32]], [[3, 0], [32, 0], [9, 21]]])
    with torch.no_grad():
        out = model(frames, locations=offsets.float() / (SIZE - P))  # the patches the random policy drew
    ref = linear_classifier(stage1.classifier.fc, official_features(stage1, frames, offsets))
    torch.testing.assert_close(out.prediction, ref, rtol=1e-4, atol=1e-4)
    labels = torch.tensor([1, 3])
    ro = rollout(model, frames, labels, generator=torch.Generator().manual_seed(2))
    assert ro.rewards.shape == (2, 3) and torch.isfinite(ro.rewards).all() and ro.rewards.abs().max() > 0
    with torch.no_grad():  # the rollout's predictions are the model's own at the sampled patches
        own = model(frames, locations=model.actions_to_locations(ro.actions)).logits
    torch.testing.assert_close(ro.logits, own, rtol=1e-4, atol=1e-5)


def test_fc_counterfactual_swaps_one_frame_of_the_average():
    torch.manual_seed(6)
    from adafocus.models.classifier import ProbabilityAverageClassifier

    clf = ProbabilityAverageClassifier(7, 4, dropout=0.0).eval()
    g, loc, alt = torch.randn(2, 5, 3), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    cf = clf.counterfactual(g, loc, alt)
    for t in range(5):
        spliced = torch.cat([loc[:, :t], alt[:, t : t + 1]], 1)
        torch.testing.assert_close(cf[:, t], clf(g[:, : t + 1], spliced)[0][:, -1])
    probs = torch.softmax(clf.fc(torch.cat([g, loc], -1)), -1)
    torch.testing.assert_close(clf(g, loc)[0].exp(), probs.cumsum(1) / torch.arange(1, 6).view(1, -1, 1))


def test_renamed_fc_key_is_named(fc_gfv):
    sd = dict(fc_gfv.state_dict())
    sd["classifier.fc.bais"] = sd.pop("classifier.fc.bias")
    with pytest.raises(CheckpointError, match=r"no place.*classifier\.fc\.bais.*not in the checkpoint.*classifier"):
        convert_official_checkpoint({"model_state_dict": sd}, patch_size=P, input_size=SIZE)
