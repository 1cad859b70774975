import pytest
import torch
from conftest import tiny_model

from adafocus import AdaFocus, AdaFocusOutput


def clip(b=2, t=4, size=64):
    return torch.randn(b, t, 3, size, size)


@pytest.mark.parametrize("policy", ["learned", "random", "centre", "gaussian"])
@pytest.mark.parametrize("classifier", ["gru", "fc"])
def test_offline_shapes_and_dtypes(policy, classifier):
    model = tiny_model(classifier=classifier).eval()
    out = model(clip(), policy=policy)
    assert isinstance(out, AdaFocusOutput)
    assert out.logits.shape == (2, 4, 5) and out.logits.dtype == torch.float32
    assert out.locations.shape == (2, 4, 2) and out.locations.is_floating_point()
    assert out.offsets.shape == (2, 4, 2) and out.offsets.dtype == torch.long
    assert out.offsets.min() >= 0 and out.offsets.max() <= 64 - 32
    assert out.global_features.shape == (2, 4, model.global_cnn.num_features)
    assert out.local_features.shape == (2, 4, model.local_cnn.num_features)
    if policy == "learned":
        assert out.actions.shape == (2, 4) and out.actions.dtype == torch.long
        for name in ("log_probs", "values", "entropy"):
            assert getattr(out, name).shape == (2, 4) and getattr(out, name).dtype == torch.float32
        assert torch.all(out.log_probs <= 0)
    else:
        assert out.actions is None and out.log_probs is None
    if policy == "centre":
        assert torch.all(out.offsets == 16)


def test_learned_policy_samples_in_training_and_argmax_at_test():
    model = tiny_model()
    x = clip(b=8, t=3)
    model.eval()
    a1, a2 = model(x).actions, model(x).actions
    assert torch.equal(a1, a2)
    out = model(x)
    dist = model.policy.distribution(model.policy(out.feature_maps).logits)
    assert torch.equal(out.actions, dist.probs.argmax(-1))
    model.train()
    draws = torch.stack([model(x).actions for _ in range(5)])
    assert not all(torch.equal(draws[0], d) for d in draws[1:])


@pytest.mark.parametrize("classifier", ["gru", "fc"])
@pytest.mark.parametrize("reuse_global", [True, False])
def test_online_matches_offline_for_same_locations(classifier, reuse_global):
    model = tiny_model(classifier=classifier, reuse_global=reuse_global).eval()
    x = clip(b=3, t=5)
    locs = torch.rand(3, 5, 2)
    off = model(x, locations=locs)
    state = model.init_state()
    for t in range(5):
        step, state = model.step(x[:, t], state, location=locs[:, t])
        torch.testing.assert_close(step.logits, off.logits[:, t])
        torch.testing.assert_close(step.offset, off.offsets[:, t])
    assert state.t == 5


def test_online_matches_offline_learned_policy():
    model = tiny_model(grid_size=6).eval()
    x = clip(b=2, t=6)
    off = model(x)
    state = model.init_state()
    for t in range(6):
        step, state = model.step(x[:, t], state)
        assert torch.equal(step.action, off.actions[:, t])
        torch.testing.assert_close(step.logits, off.logits[:, t])
        torch.testing.assert_close(step.log_prob, off.log_probs[:, t])
        torch.testing.assert_close(step.value, off.values[:, t])


@pytest.mark.parametrize("g", [5, 6, 7])
@pytest.mark.parametrize("p", [96, 128, 144, 160, 176, 192])
def test_grid_and_patch_sizes(g, p):
    model = tiny_model(input_size=224, patch_size=p, grid_size=g).eval()
    out = model(clip(b=1, t=2, size=224))
    assert out.actions.max() < g * g
    assert out.offsets.max() <= 224 - p
    assert model.policy.actor.out_features == g * g


def test_stage1_gradients_reach_local_and_classifier_only():
    model = tiny_model(dropout=0.1).train()
    model.set_trainable(global_cnn=False)  # paper: f_G frozen in stage I
    out = model(clip(), policy="random")
    loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), torch.randint(0, 5, (8,)))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.local_cnn.parameters())
    assert all(p.grad is not None for p in model.classifier.parameters())
    assert all(p.grad is None for p in model.global_cnn.parameters())
    assert all(p.grad is None for p in model.policy.parameters())


def test_ppo_gradients_reach_policy_only():
    model = tiny_model().train()
    out = model(clip())
    advantages = torch.randn(2, 4)
    loss = -(out.log_probs * advantages).mean() + (out.values - 1).pow(2).mean() - 0.01 * out.entropy.mean()
    loss.backward()
    assert all(p.grad is not None for p in model.policy.parameters())
    for part in (model.global_cnn, model.local_cnn, model.classifier):
        assert all(p.grad is None for p in part.parameters())
    # re-evaluating stored states (the PPO update) gives the same log-probs
    lp, v, ent = model.policy.evaluate(out.feature_maps, out.actions)
    torch.testing.assert_close(lp, out.log_probs.detach())
    torch.testing.assert_close(v, out.values.detach())


def test_one_location_per_video_is_adafocus_tsm_with_plain_backbones():
    from adafocus import AdaFocusTSM

    model = AdaFocusTSM(5, global_backbone="tiny_cnn", local_backbone="tiny_cnn", input_size=64, patch_size=32,
                        grid_size=5, global_frames=4, local_frames=4, policy_hidden_dim=32,
                        policy_type="categorical").eval()  # fmt: skip
    out = model(clip(b=3, t=4))
    assert out.actions.shape == (3, 1) and out.logits.shape == (3, 1, 5)
    assert torch.all(out.offsets == out.offsets[:, :1])
    with pytest.raises(ValueError, match="clips must have 4 frames"):
        model(clip(b=1, t=3))
    with pytest.raises(ValueError, match="AdaFocusTSM"):  # the former AdaFocus(policy_scope="video") says where it went
        tiny_model(policy_scope="video", num_frames=4)


@pytest.mark.parametrize("classifier", ["gru", "fc"])
def test_counterfactual_matches_stepwise_replay(classifier):
    """Step t of ``counterfactual`` = replaying the real history 1..t-1 online, then the alternative."""
    model = tiny_model(classifier=classifier).eval()
    x = clip(b=2, t=4)
    real = model(x, locations=torch.rand(2, 4, 2))
    alt_locs = torch.rand(2, 4, 2)
    alt = model(x, locations=alt_locs)
    batched = model.classifier.counterfactual(real.global_features, real.local_features, alt.local_features)
    for t in range(4):
        state = model.init_state()
        for s in range(t):
            _, state = model.step(x[:, s], state, location=real.locations[:, s])
        step, _ = model.step(x[:, t], state, location=alt_locs[:, t])
        torch.testing.assert_close(batched[:, t], step.logits)


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        (dict(patch_size=96), "patch_size"),
        (dict(grid_size=0), "grid_size"),
        (dict(grid_size=-2), "grid_size"),
        (dict(num_classes=0), "num_classes"),
        (dict(classifier="lstm"), "classifier"),
        (dict(policy_scope="video"), "AdaFocusTSM"),
    ],
)
def test_bad_constructor_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        tiny_model(**kwargs)


def test_bad_forward_arguments():
    model = tiny_model().eval()
    with pytest.raises(ValueError, match="frames must be a 5-D"):
        model(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        model(torch.randn(1, 2, 1, 64, 64))
    with pytest.raises(ValueError, match="input_size"):
        model(torch.randn(1, 2, 3, 48, 48))
    with pytest.raises(ValueError, match="locations"):
        model(clip(), locations=torch.rand(2, 3, 2))
    with pytest.raises(ValueError, match="policy"):
        model(clip(), policy="best")
    with pytest.raises(ValueError, match="frame must be"):
        model.step(clip(), model.init_state())


def test_glance_at_lower_resolution():
    model = tiny_model(input_size=128, patch_size=48, glance_size=64).eval()
    out = model(clip(b=1, t=2, size=128))
    assert out.logits.shape == (1, 2, 5)
    assert model.policy.feature_hw == (2, 2)


def test_default_model_is_the_papers():
    model = AdaFocus(num_classes=200)
    assert type(model.global_cnn.model).__name__ == "MobileNetV2"
    assert type(model.local_cnn.model).__name__ == "ResNet"
    assert model.policy.gru.hidden_size == 1024 and model.classifier.gru.hidden_size == 1024
    assert model.policy.actor.out_features == 49 and model.patch_size == 128
    assert model.classifier.gru.input_size == 1280 + 2048
