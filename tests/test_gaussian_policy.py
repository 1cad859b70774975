"""AdaFocus-TSM's continuous policy (official ``ppo_continuous``): its distribution, log-probabilities,
PPO step and decisions per video, each against values computed by hand; training through the CLI."""

import math

import pytest
import torch
import torch.nn.functional as F
from test_training import QUIET, TOY

from adafocus import AdaFocusTSM
from adafocus.models.gaussian_policy import GaussianPolicy
from adafocus.training.cli import run_cli
from adafocus.training.ppo import ppo_loss
from adafocus.training.reward import rollout

STD = 0.25
TINY_TSM = dict(global_backbone="tsm_tiny_mobilenet", local_backbone="tsm_tiny_resnet", input_size=64,
                patch_size=32, policy_hidden_dim=16, policy_channels=4, dropout=0.0)  # fmt: skip


def policy(batch_norm: bool = True) -> GaussianPolicy:
    torch.manual_seed(0)
    return GaussianPolicy(6, (3, 3), hidden_dim=8, reduced_channels=4, batch_norm=batch_norm, action_std=STD)


def hand_means(pol: GaussianPolicy, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward written out: conv -> (bn) -> relu -> linear -> (bn) -> relu -> GRU -> sigmoid(actor), critic."""
    b, s = x.shape[:2]
    enc = pol.encoder
    bn = len(enc) == 7  # conv, bn, relu, flatten, linear, bn, relu (official with_bn) or without the two bns

    def norm(z: torch.Tensor, m: torch.nn.Module) -> torch.Tensor:
        return F.batch_norm(z, m.running_mean, m.running_var, m.weight, m.bias, False, 0, 1e-5) if bn else z

    z = F.relu(norm(F.conv2d(x.flatten(0, 1), enc[0].weight), enc[1]))
    lin = enc[4] if bn else enc[3]
    z = F.relu(norm(F.linear(z.flatten(1), lin.weight, lin.bias), enc[5] if bn else None))
    z = z.view(b, s, -1)
    g, h = pol.gru, torch.zeros(b, pol.hidden_dim)
    outs = []
    for t in range(s):  # the GRU equations (PyTorch's gate order r, z, n)
        gi, gh = F.linear(z[:, t], g.weight_ih_l0, g.bias_ih_l0), F.linear(h, g.weight_hh_l0, g.bias_hh_l0)
        r = torch.sigmoid(gi[:, :8] + gh[:, :8])
        u = torch.sigmoid(gi[:, 8:16] + gh[:, 8:16])
        n = torch.tanh(gi[:, 16:] + r * gh[:, 16:])
        h = (1 - u) * n + u * h
        outs.append(h)
    out = torch.stack(outs, 1)
    return torch.sigmoid(F.linear(out, pol.actor.weight, pol.actor.bias)), F.linear(
        out, pol.critic.weight, pol.critic.bias
    ).squeeze(-1)


def hand_log_prob(a: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """log N(a; mu, STD^2 I) in 2-D: sum over (y, x) of -(a-mu)^2 / (2 STD^2) - log STD - log(2 pi) / 2."""
    return (-((a - mu) ** 2) / (2 * STD**2) - math.log(STD) - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_distribution_and_log_probs_match_the_hand_computation():
    pol = policy()
    with torch.no_grad():  # non-trivial BN statistics
        for bn in (pol.encoder[1], pol.encoder[5]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    pol.eval()
    x = torch.randn(3, 2, 6, 3, 3)
    out = pol(x)
    mu, v = hand_means(pol, x)
    torch.testing.assert_close(out.logits, mu)
    torch.testing.assert_close(out.values, v)
    assert out.logits.shape == (3, 2, 2) and 0 < mu.min() and mu.max() < 1
    a = torch.rand(3, 2, 2)
    dist = pol.distribution(out.logits)
    torch.testing.assert_close(dist.log_prob(a), hand_log_prob(a, mu))
    # the entropy of a 2-D Gaussian with std s: log(2 pi e s^2), whatever the mean
    torch.testing.assert_close(dist.entropy(), torch.full((3, 2), math.log(2 * math.pi * math.e * STD**2)))
    assert pol.entropy_value() == pytest.approx(math.log(2 * math.pi * math.e * STD**2))
    lp, values, ent = pol.evaluate(x, a)
    torch.testing.assert_close(lp, hand_log_prob(a, mu))
    torch.testing.assert_close(values, v)


def test_act_samples_clip_and_test_time_takes_the_mean():
    pol = policy().eval()
    mu = torch.tensor([[[0.5, 0.02]], [[0.98, 0.5]]])
    gen = torch.Generator().manual_seed(3)
    a = pol.act(mu, True, gen)
    noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, (mu + STD * noise).clamp(0, 1))  # official: relu(a) then 1 - relu(1 - a)
    assert torch.equal(pol.act(mu, False), mu)
    many = pol.act(mu.expand(2, 4000, 2).contiguous(), True, gen)
    assert many.min() == 0 and many.max() == 1  # the clip reaches both borders
    centre = many[0, :, 0]  # mean 0.5, far from the borders: the sample's spread is the std
    assert abs(centre.std().item() - STD) < 0.03 and abs(centre.mean().item() - 0.5) < 0.03


def test_ppo_loss_and_gradient_match_the_hand_computation():
    pol = policy(batch_norm=False)
    x = torch.randn(4, 1, 6, 3, 3)
    with torch.no_grad():
        mu0 = pol(x).logits
    a = (mu0 + STD * torch.randn(mu0.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    old_lp = hand_log_prob(a, mu0) + torch.tensor([[0.0], [0.5], [-0.5], [0.1]])  # some ratios are clipped
    returns = torch.tensor([[1.0], [-1.0], [0.5], [-0.2]])
    loss, stats = ppo_loss(pol, x, a, old_lp, returns, clip=0.2, value_coef=0.5, entropy_coef=0.01)
    mu, v = hand_means(pol, x)
    ratio = torch.exp(hand_log_prob(a, mu) - old_lp)
    adv = returns - v.detach()
    surr = torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    ent = math.log(2 * math.pi * math.e * STD**2)
    expected = -surr.mean() + 0.5 * ((v - returns) ** 2).mean() - 0.01 * ent
    torch.testing.assert_close(loss, expected)
    assert stats["clip_frac"] > 0  # the test covers the clipped branch too
    loss.backward()
    # d loss / d actor.bias by hand: only the surrogate depends on it; where the min picks the
    # unclipped term, d(-ratio * A)/d mu = -A * ratio * (a - mu) / STD^2, and d mu / d bias = mu (1 - mu)
    with torch.no_grad():
        unclipped = (ratio * adv <= ratio.clamp(0.8, 1.2) * adv).float()
        d_mu = -(adv * ratio * unclipped).unsqueeze(-1) * (a - mu) / STD**2
        grad = (d_mu * mu * (1 - mu)).sum((0, 1)) / adv.numel()
    torch.testing.assert_close(pol.actor.bias.grad, grad)
    # one Adam step (the official optimiser): the first step moves each parameter by lr * g / (|g| + eps)
    before = pol.actor.bias.detach().clone()
    torch.optim.Adam(pol.parameters(), lr=3e-4).step()
    torch.testing.assert_close(pol.actor.bias.detach() - before, -3e-4 * grad / (grad.abs() + 1e-8))


def test_rollout_log_probs_are_those_of_the_sampled_locations():
    model = AdaFocusTSM(4, **TINY_TSM, global_frames=2, local_frames=4).eval()
    frames, labels = torch.randn(3, 4, 3, 64, 64), torch.tensor([0, 1, 2])
    ro = rollout(model, frames, labels, generator=torch.Generator().manual_seed(0))
    mu = model.policy(ro.feature_maps).logits
    torch.testing.assert_close(ro.log_probs, hand_log_prob(ro.actions, mu))
    # the reward of the one decision: p_y(chosen patches) - p_y(random patches), whole clips
    out = model(frames, locations=ro.actions)
    p = torch.softmax(out.prediction, -1)[torch.arange(3), labels]
    assert torch.all(ro.rewards[:, 0] <= p + 1e-6)
    torch.testing.assert_close(ro.logits[:, 0], out.prediction)


def test_decisions_per_video_split_the_clip_into_runs():
    model = AdaFocusTSM(4, **TINY_TSM, global_frames=4, local_frames=4, decisions_per_video=2).eval()
    assert model.policy.in_channels == 2 * model.global_cnn.num_features  # each decision sees its 2 glance maps
    frames = torch.randn(2, 4, 3, 64, 64)
    out = model(frames)
    assert out.actions.shape == (2, 2, 2) and out.logits.shape == (2, 2, 4)
    assert torch.equal(out.offsets[:, 0], out.offsets[:, 1]) and torch.equal(out.offsets[:, 2], out.offsets[:, 3])
    # step s: mean global logits + mean local logits of the frames of runs 1..s
    glob = model.global_head(out.global_features).mean(1)
    local = model.classifier.fc_local(out.local_features)
    torch.testing.assert_close(out.logits[:, 0], glob + local[:, :2].mean(1))
    torch.testing.assert_close(out.logits[:, 1], glob + local.mean(1))
    # the counterfactual of step 2 keeps run 1 real and takes run 2 from the alternative
    alt = torch.randn_like(out.local_features)
    cf = model.counterfactual(out.global_features, out.local_features, alt)
    alt_logits = model.classifier.fc_local(alt)
    torch.testing.assert_close(cf[:, 1], glob + torch.cat([local[:, :2], alt_logits[:, 2:]], 1).mean(1))
    torch.testing.assert_close(cf[:, 0], glob + alt_logits[:, :2].mean(1))
    with pytest.raises(ValueError, match="decisions_per_video=3 must divide"):
        AdaFocusTSM(4, **TINY_TSM, global_frames=4, local_frames=4, decisions_per_video=3)


def test_files_of_the_categorical_tsm_still_load(tmp_path):
    from adafocus import load_model, save_model

    old = AdaFocusTSM(4, **TINY_TSM, global_frames=2, local_frames=4, policy_type="categorical",
                      policy_batch_norm=False, global_head="classifier")  # fmt: skip
    save_model(old, tmp_path / "old.pt")
    raw = torch.load(tmp_path / "old.pt", weights_only=True)
    for key in ("policy_type", "policy_batch_norm", "global_head", "action_std", "decisions_per_video"):
        raw["config"].pop(key)  # as an earlier version wrote it
    torch.save(raw, tmp_path / "old.pt")
    again = load_model(tmp_path / "old.pt")
    assert again.policy_type == "categorical" and again.global_head is None
    frames = torch.randn(1, 4, 3, 64, 64)
    torch.testing.assert_close(again.eval()(frames).logits, old.eval()(frames).logits)


def test_stages_one_and_two_train_the_gaussian_tsm_through_the_cli(tmp_path):
    """`adafocus fit` on the toy TSM config (stage I), then PPO (stage II) moves only pi."""
    common = [f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}",
              "--trainer.max_steps=2", "--trainer.limit_val_batches=1", *QUIET]  # fmt: skip
    cli = run_cli(["fit", "--config", str(TOY / "tsm.yaml"), *common])
    s1 = tmp_path / "s1.ckpt"
    cli.trainer.save_checkpoint(s1)
    assert isinstance(cli.model.model.policy, GaussianPolicy)
    before = {k: v.clone() for k, v in cli.model.model.state_dict().items()}
    cli = run_cli(["fit", "--config", str(TOY / "tsm.yaml"), "--model", "adafocus.training.PolicyStage",
                   f"--model.init_args.init_from={s1}", *common])  # fmt: skip
    after = cli.model.model.state_dict()
    changed = {k.split(".")[0] for k in after if "num_batches" not in k and not torch.equal(after[k], before[k])}
    assert changed == {"policy"}
    assert "train/reward" in cli.trainer.logged_metrics
    val = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    assert 0 <= val["val/top1"] <= 1  # eval takes pi's mean location
