"""int8 glance: ReLU6 kept exactly, outputs close to fp32, f_G swapped in AdaFocus / TSM / TSM+, clear errors."""

import copy

import pytest
import torch
from conftest import tiny_model
from test_inference import _random_bn
from torch import nn

from adafocus.accelerate.prepare import infer, prepare_for_inference
from adafocus.accelerate.quantize import cpu_has_vnni, int8_weight_bits, quantize_backbone, quantize_glance
from adafocus.models.full_frame import TSMPlus


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _relu6_block() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(), nn.Conv2d(16, 8, 1)).eval()
    with torch.no_grad():
        net[0].weight.mul_(30)  # most pre-activations land far above 6, so the clamp matters
    return net, torch.randn(8, 3, 16, 16)


def _check_int8_block(weight_bits: int | None) -> nn.Module:
    net, x = _relu6_block()
    q = quantize_backbone(net, [x[:4]], weight_bits=weight_bits)
    relu = copy.deepcopy(net)
    relu[2] = nn.ReLU()
    with torch.no_grad():
        ref, out, unclamped = net(x), q(x), relu(x)
    assert (net[:3](x) >= 6).float().mean() > 0.2
    assert _rel(out, ref) < 0.05  # int8 error only
    assert _rel(unclamped, ref) > 0.5  # what a plain ReLU swap would have given
    assert not any(isinstance(m, nn.Conv2d) and type(m) is nn.Conv2d for m in q.modules())  # all convs int8
    return q


def test_relu6_is_kept_through_int8():
    """The scheme chosen for this CPU (7-bit weights without VNNI/AMX, 8-bit with) is accurate."""
    q = _check_int8_block(None)
    assert q.int8_weight_bits == int8_weight_bits() == (8 if cpu_has_vnni() else 7)


def test_int8_with_7_bit_weights_is_right_on_every_cpu():
    assert _check_int8_block(7).int8_weight_bits == 7


@pytest.mark.skipif(not cpu_has_vnni(), reason="8-bit weights saturate int16 sums on x86 CPUs without VNNI/AMX")
def test_int8_with_8_bit_weights_on_a_vnni_cpu():
    assert _check_int8_block(8).int8_weight_bits == 8


EPYC_FLAGS = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni vaes vpclmulqdq"


@pytest.mark.parametrize(
    ("flags", "bits"),
    [(EPYC_FLAGS, 7), (EPYC_FLAGS + " avx512f avx512bw avx512_vnni", 8), (EPYC_FLAGS + " avx_vnni", 8),
     (EPYC_FLAGS + " avx512f amx_tile amx_int8 amx_bf16", 8), (EPYC_FLAGS + " avx512f avx512bw", 7)],
)  # fmt: skip
def test_int8_weight_bits_follow_the_cpu_flags(flags, bits):
    cpuinfo = f"processor\t: 0\nvendor_id\t: X\nflags\t\t: {flags}\nbugs\t\t: none\n"
    assert int8_weight_bits(cpuinfo) == bits
    assert int8_weight_bits("no flags line here") == 7  # unknown CPU: the scheme that is right everywhere


def test_weight_bits_is_checked():
    net, x = _relu6_block()
    with pytest.raises(ValueError, match="weight_bits must be 7 or 8"):
        quantize_backbone(net, [x], weight_bits=4)


def test_quantize_glance_adafocus_close_and_f_l_untouched():
    torch.manual_seed(0)
    model = prepare_for_inference(_random_bn(tiny_model()))
    frames = torch.randn(2, 4, 3, 64, 64)
    ref = infer(model, frames)
    local = model.local_cnn
    quantize_glance(model, torch.randn(4, 4, 3, 64, 64))
    assert isinstance(model.global_cnn, torch.fx.GraphModule) and model.global_cnn.num_features == 48
    assert model.local_cnn is local
    out = infer(model, frames, locations=ref.locations)  # same patches, so only f_G's precision differs
    assert _rel(out.global_features, ref.global_features) < 0.05
    assert torch.equal(out.local_features, ref.local_features)
    assert _rel(out.logits, ref.logits) < 0.1


def test_quantize_glance_tsm_mobilenet_and_tsm_plus():
    from test_tsm import tiny_tsm

    torch.manual_seed(0)
    model = prepare_for_inference(_random_bn(tiny_tsm(global_frames=2, local_frames=4)))
    frames = torch.randn(2, 4, 3, 64, 64)
    with torch.inference_mode():
        ref = model.glance(model.glance_frames(frames))[0]
    ref_logits = infer(model, frames).logits
    quantize_glance(model, torch.randn(3, 4, 3, 64, 64))
    with torch.inference_mode():
        out = model.glance(model.glance_frames(frames))[0]
    assert _rel(out, ref) < 0.05  # the temporal shift still runs, between int8 convolutions
    assert _rel(infer(model, frames).logits, ref_logits) < 0.1

    plus = prepare_for_inference(
        _random_bn(TSMPlus(5, global_backbone="tiny_cnn", local_backbone="tiny_cnn", num_frames=4, input_size=64))
    )
    ref = infer(plus, frames)
    quantize_glance(plus, frames)
    assert isinstance(plus.global_cnn, torch.fx.GraphModule)
    assert _rel(infer(plus, frames), ref) < 0.1


@pytest.mark.skipif(
    not {"onednn", "x86"} <= set(torch.backends.quantized.supported_engines), reason="needs the oneDNN and x86 engines"
)
def test_quantize_glance_leaves_the_quantized_engine_as_it_was():
    model = prepare_for_inference(_random_bn(tiny_model()))
    frames = torch.randn(2, 4, 3, 64, 64)
    previous = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = "x86"
        quantize_glance(model, frames, engine="onednn")
        assert torch.backends.quantized.engine == "x86"
        out = infer(model, frames, policy="centre").logits
        torch.backends.quantized.engine = "onednn"  # the packed int8 f_G runs the same under any engine
        torch.testing.assert_close(infer(model, frames, policy="centre").logits, out, rtol=0, atol=0)
    finally:
        torch.backends.quantized.engine = previous


def test_quantize_glance_errors():
    plus = TSMPlus(5, global_backbone=None, local_backbone="tiny_cnn", num_frames=4, input_size=64)
    with pytest.raises(ValueError, match="no global_cnn"):
        quantize_glance(plus, torch.randn(1, 4, 3, 64, 64))
    model = tiny_model().eval()
    with pytest.raises(ValueError, match="no batch"):
        quantize_glance(model, [])
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        quantize_glance(model, torch.randn(4, 3, 64, 64))
    with pytest.raises(ValueError, match="engine"):
        quantize_backbone(model.global_cnn, [torch.randn(2, 3, 64, 64)], engine="tflite")


def test_count_flops_refuses_int8_parts():
    from adafocus.flops import count_flops

    model = tiny_model().eval()
    quantize_glance(model, torch.randn(1, 4, 3, 64, 64))
    with pytest.raises(ValueError, match="global_cnn.*int8"):
        count_flops(model, 4)


def test_benchmark_cli_int8(capsys, tmp_path):
    import json

    from adafocus.cli import main

    args = ["benchmark", "--models", "test_adafocus,test_adafocus_tsm", "--repeats", "1", "--warmup", "0",
            "--batch-size", "2", "--threads", "1", "--no-keep-freed-memory", "--json"]  # fmt: skip
    assert main([*args, "--quantize-glance"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["test_adafocus"]["setting"]["quantize_glance"] and rows["test_full"]["setting"]["quantize_glance"]
    assert not rows["test_adafocus"]["setting"]["quantize_local"]
    assert rows["test_adafocus"]["parts_ms"]["f_G"] > 0 and rows["test_adafocus"]["realised_bs1"] > 0
    assert main([*args, "--quantize-local", "--no-breakdown", "--plot", str(tmp_path / "realised.png")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert (tmp_path / "realised.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {r["model"] for r in rows} == {"test_adafocus", "test_full", "test_adafocus_tsm", "test_tsm_plus"}
    assert all(r["setting"]["quantize_local"] and r["ms_per_video"] > 0 for r in rows)


def test_keep_freed_memory_in_a_fresh_process():
    import subprocess
    import sys

    code = "from adafocus.accelerate import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ("True" if sys.platform == "linux" else "False")
