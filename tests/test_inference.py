"""Fast inference path: BN folding / channels_last keep outputs, AdaFocus+ skips f_L work, benchmark CLI."""

import copy
import json
import math

import pytest
import torch
from conftest import tiny_model
from torch import nn

from adafocus.accelerate.batchnorm import fold_batchnorm
from adafocus.accelerate.prepare import first_parameter, infer, prepare_for_inference
from adafocus.cli import main


def _random_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, so that folding them is actually tested."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("kind", ["adafocus", "tsm"])
def test_prepare_for_inference_keeps_outputs(kind):
    if kind == "adafocus":
        model, frames = _random_bn(tiny_model()), torch.randn(2, 4, 3, 64, 64)
    else:
        from test_tsm import tiny_tsm

        model, frames = _random_bn(tiny_tsm(global_frames=2, local_frames=4)), torch.randn(2, 4, 3, 64, 64)
    ref = infer(model, frames)
    fast = prepare_for_inference(copy.deepcopy(model), channels_last=True, fold_bn=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    out = infer(fast, frames)
    assert out.logits.is_inference()  # ran under torch.inference_mode
    assert torch.equal(out.offsets, ref.offsets)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.local_features, ref.local_features, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["adafocus", "tsm"])
def test_infer_skips_policy_stats_only(kind):
    """infer() builds no policy distribution (no log_probs / entropy); everything else is unchanged."""
    torch.manual_seed(0)
    if kind == "adafocus":
        model, frames = tiny_model().eval(), torch.randn(2, 4, 3, 64, 64)
    else:
        from test_tsm import tiny_tsm

        model, frames = tiny_tsm(global_frames=2, local_frames=4).eval(), torch.randn(2, 4, 3, 64, 64)
    fast = infer(model, frames)
    with torch.no_grad():
        full = model(frames, sample=False)
    assert fast.log_probs is None and fast.entropy is None
    assert full.log_probs is not None and full.entropy is not None
    assert torch.equal(fast.actions, full.actions) and torch.equal(fast.logits, full.logits)
    assert torch.equal(fast.values, full.values)
    with_stats = infer(model, frames, policy_stats=True)
    assert torch.equal(with_stats.log_probs, full.log_probs) and torch.equal(with_stats.entropy, full.entropy)


def test_fold_batchnorm_needs_eval_and_counts_pairs():
    model = tiny_model()
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(model.global_cnn.train())
    assert fold_batchnorm(model.eval()) == 10  # 5 conv+BN pairs in each tiny CNN


def test_skip_path_runs_f_l_on_exactly_the_kept_frames():
    model = tiny_model(skip_policy=True).eval()
    calls = []
    model.local_cnn.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    frames = torch.randn(2, 5, 3, 64, 64)
    keep = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.float32)
    out = infer(model, frames, keep=keep)
    assert calls == [5]  # one batched f_L call on the 5 kept patches
    assert torch.all(out.local_features[keep == 0] == 0) and torch.all(out.local_features[keep == 1].abs().sum(-1) > 0)
    calls.clear()
    infer(model, frames, keep=torch.zeros(2, 5))
    assert calls == []  # nothing kept: f_L never runs
    calls.clear()
    out = infer(model, frames)  # pi' decides: still one call on exactly its kept frames
    assert calls == ([int(out.keep.sum())] if out.keep.sum() else [])


def test_benchmark_cli_tiny(capsys):
    args = ["benchmark", "--models", "test_adafocus,test_adafocus_tsm", "--repeats", "1", "--warmup", "0",
            "--batch-size", "2", "--threads", "1", "--no-keep-freed-memory"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in rows} == {"test_adafocus", "test_full", "test_adafocus_tsm", "test_tsm_plus"}
    for r in rows:
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("gflops", "ms_per_video", "videos_per_s"))
        if r["baseline"]:
            assert set(r["parts_ms"]) == {"f_G", "policy", "crop", "f_L", "classifier"}
            inner = r["in_forward_ms"]
            assert inner["f_G"] > 0 and inner["f_L"] > 0 and inner["f_G"] + inner["f_L"] <= inner["forward"]
            assert all(math.isfinite(r[k]) for k in ("flops_ratio", "speedup_bs1", "realised_batch", "overhead"))
    assert main([*args[:2], "test_adafocus", *args[3:], "--ablate", "--no-breakdown"]) == 0
    text = capsys.readouterr().out
    assert "nchw" in text and "cl+bn" in text and "test_full" in text


def test_quantize_heads_replaces_grus_and_stays_close():
    model = tiny_model(classifier_hidden_dim=64, policy_hidden_dim=64).eval()
    frames = torch.randn(2, 4, 3, 64, 64)
    ref = infer(model, frames, policy="centre")
    fast = prepare_for_inference(copy.deepcopy(model), quantize_heads=True)
    assert not any(type(m) is nn.GRU for m in fast.modules())  # int8 dynamic GRUs now
    out = infer(fast, frames, policy="centre")
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0.05)
    assert infer(fast, frames).logits.shape == ref.logits.shape  # the learned policy runs too


@pytest.mark.skipif(
    not {"onednn", "x86"} <= set(torch.backends.quantized.supported_engines), reason="needs the oneDNN and x86 engines"
)
def test_quantize_heads_packs_for_x86_whatever_the_global_engine():
    # a process set to oneDNN (by the user, or by quantize_glance before it restored the engine) would pack slower GRUs
    model = tiny_model(classifier_hidden_dim=64, policy_hidden_dim=64).eval()
    frames = torch.randn(2, 4, 3, 64, 64)
    previous = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = "x86"
        ref = infer(prepare_for_inference(copy.deepcopy(model), quantize_heads=True), frames, policy="centre")
        torch.backends.quantized.engine = "onednn"
        fast = prepare_for_inference(copy.deepcopy(model), quantize_heads=True)
        assert torch.backends.quantized.engine == "onednn"  # restored
        out = infer(fast, frames, policy="centre")
    finally:
        torch.backends.quantized.engine = previous
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)


def test_first_parameter_is_the_shallowest_float_parameter():
    deep = nn.Sequential(nn.Sequential(nn.Sequential(nn.Linear(2, 2))), nn.Linear(2, 3))
    assert first_parameter(deep) is deep[1].weight  # level order, not depth first
    holder = nn.Module()
    holder.register_parameter("steps", nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False))
    holder.net = nn.Linear(2, 2)
    assert first_parameter(holder) is holder.net.weight  # integer parameters are no dtype hint
    assert first_parameter(nn.ReLU()) is None


def test_speedups_and_realised_share():
    from adafocus.bench.inference import add_ratios

    base = dict(model="b", baseline=None, session=0, gflops=8.0, ms_per_video=300.0, videos_per_s=1.0)
    model = dict(model="a", baseline="b", session=0, gflops=2.0, ms_per_video=100.0, videos_per_s=2.0)
    other = dict(model="a", baseline="b", session=1, gflops=2.0, ms_per_video=100.0, videos_per_s=2.0)
    add_ratios([base, model, other])
    assert model["flops_ratio"] == 4.0 and model["speedup_bs1"] == 3.0 and model["speedup_batch"] == 2.0
    assert model["realised_bs1"] == 0.75 and model["realised_batch"] == 0.5
    assert "speedup_bs1" not in other  # its baseline was not timed in that setting
