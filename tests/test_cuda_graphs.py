"""CUDA graph replay of offline inference (``adafocus.accelerate.cuda_graphs``); the GPU tests skip on a CPU."""

import pytest
import torch
from conftest import tiny_model

from adafocus import TSMPlus
from adafocus.accelerate.cuda_graphs import GraphedInfer
from adafocus.accelerate.prepare import infer, prepare_for_inference
from adafocus.cli import main

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_needs_a_cuda_model():
    with pytest.raises(ValueError, match="CUDA device"):
        GraphedInfer(tiny_model().eval())


def test_benchmark_refuses_cuda_graphs_on_the_cpu(capsys):
    assert main(["benchmark", "--models", "test_adafocus", "--cuda-graphs"]) == 2
    assert "--cuda-graphs needs --device cuda" in capsys.readouterr().err


def _tiny(kind: str) -> torch.nn.Module:
    """4-frame tiny models on 64x64 frames."""
    from test_tsm import tiny_tsm

    if kind == "adafocus":
        return tiny_model()
    if kind == "tsm":
        return tiny_tsm(global_frames=2, local_frames=4)
    return TSMPlus(5, global_backbone="tiny_cnn", local_backbone="tiny_cnn", num_frames=4, input_size=64)


@cuda
@pytest.mark.parametrize("kind", ["adafocus", "tsm", "tsm_plus"])
def test_replay_matches_eager_on_new_inputs(kind):
    t = 4
    model = prepare_for_inference(_tiny(kind).cuda())
    graphed = GraphedInfer(model)
    for _ in range(3):  # fresh inputs each time: the replay must read the new frames, not the captured ones
        frames = torch.randn(2, t, 3, 64, 64, device="cuda")
        ref, out = infer(model, frames), graphed(frames)
        if kind == "tsm_plus":
            torch.testing.assert_close(out, ref)
        else:
            assert torch.equal(out.offsets, ref.offsets)
            torch.testing.assert_close(out.logits, ref.logits)
    assert len(graphed._graphs) == 1
    graphed(torch.randn(1, t, 3, 64, 64, device="cuda"))  # a new shape is captured on its own
    assert len(graphed._graphs) == 2


@cuda
def test_adafocus_plus_is_refused():
    with pytest.raises(ValueError, match="skip_policy"):
        GraphedInfer(tiny_model(skip_policy=True).eval().cuda())
