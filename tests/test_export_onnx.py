"""Deployment export (``adafocus export --format onnx / torch-export``, :mod:`adafocus.deploy`): the exported
graph, run by onnxruntime / ``torch.export.load``, gives eager's logits, policy decisions and crop offsets.

Each ONNX export of a tiny model takes seconds (the first one in a process more: the exporter warms up),
so every model is exported once per module and the tests share the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adafocus import save_model
from adafocus.cli import main
from adafocus.deploy import ExportError, _cummax, export_onnx, export_torch_program
from adafocus.registry import create_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")


def eager(model: torch.nn.Module, frames: torch.Tensor):
    with torch.no_grad():
        return model.eval()(frames, policy="learned", sample=False, policy_stats=False)


def run_onnx(path: Path, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, (torch.from_numpy(a) for a in session.run(None, {"frames": frames.numpy()}))))


def clips(batch: int, frames: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, frames, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def assert_matches_eager(got: dict[str, torch.Tensor], ref, *, exact_actions: bool) -> float:
    """Logits and locations close, offsets (and argmax actions) equal; returns the largest logit difference."""
    torch.testing.assert_close(got["logits"], ref.logits)
    torch.testing.assert_close(got["locations"], ref.locations)
    assert torch.equal(got["offsets"], ref.offsets)
    if "actions" in got:
        if exact_actions:
            assert torch.equal(got["actions"], ref.actions)
        else:
            torch.testing.assert_close(got["actions"], ref.actions)
    return (got["logits"] - ref.logits).abs().max().item()


@pytest.fixture(scope="module")
def adafocus_onnx(tmp_path_factory):
    """test_adafocus saved by adafocus.save_model, exported by the command line: (model, its file, .onnx, stdout)."""
    tmp = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = create_model("test_adafocus").eval()
    src = save_model(model, tmp / "model.pt", class_names=list("abcde"))
    out = tmp / "model.onnx"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["export", src, "--out", str(out), "--format", "onnx"]) == 0
    return model, src, out, stdout.getvalue()


def test_cli_onnx_end_to_end(adafocus_onnx):
    model, _, out, stdout = adafocus_onnx
    assert "checked with onnxruntime against eager: largest difference" in stdout
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == list("abcde") and meta["model_class"] == "AdaFocus"
    assert json.loads(meta["outputs"]) == ["logits", "actions", "locations", "offsets"]
    assert json.loads(meta["preprocess"])["num_frames"] == 4
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # a dynamic batch


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_adafocus_matches_eager(adafocus_onnx, batch):
    model, _, out, _ = adafocus_onnx
    frames = clips(batch, 4, seed=batch)
    got = run_onnx(out, frames)
    ref = eager(model, frames)
    diff = assert_matches_eager(got, ref, exact_actions=True)
    assert got["actions"].dtype == torch.int64 and diff < 1e-4
    # the argmax is the chosen candidate and the crop starts where pixel_offsets puts it
    torch.testing.assert_close(got["locations"], model.candidates[got["actions"]])


def test_onnx_adafocus_tsm_matches_eager(tmp_path):
    # the registry's tiny AdaFocus-TSM with its tiny TSM-MobileNet-V2 as f_L too (the TSM-ResNet's export is
    # slow on a CPU); temporal shifts, the Gaussian pi (its mean) and the frame-average f_C are all exported
    torch.manual_seed(1)
    model = create_model("test_adafocus_tsm", local_backbone="tsm_tiny_mobilenet").eval()
    report = export_onnx(model, tmp_path / "tsm.onnx")
    assert report.checked_with == "onnxruntime" and report.largest_diff < 1e-4
    frames = clips(3, 4, seed=7)
    got = run_onnx(tmp_path / "tsm.onnx", frames)
    ref = eager(model, frames)
    assert ref.actions.shape == (3, 1, 2)  # one Gaussian mean per video
    assert_matches_eager(got, ref, exact_actions=False)


def test_onnx_adafocus_v2_with_cummax_static_batch(tmp_path):
    # AdaFocusV2's f_C takes a running max (cummax, no ONNX translation): exported as a loop; a static batch
    torch.manual_seed(2)
    model = create_model("test_adafocus_v2").eval()
    report = export_onnx(model, tmp_path / "v2.onnx", dynamic_batch=False)
    assert report.outputs == ["logits", "locations", "offsets"] and report.input_shape == [2, 4, 3, 64, 64]
    frames = clips(2, 4, seed=3)
    assert_matches_eager(run_onnx(tmp_path / "v2.onnx", frames), eager(model, frames), exact_actions=True)
    with pytest.raises(Exception, match="frames"):  # onnxruntime refuses another batch size
        run_onnx(tmp_path / "v2.onnx", clips(3, 4, seed=3))


def test_cummax_loop_equals_torch():
    x = torch.randint(0, 4, (3, 6, 5)).float()  # many ties: the later index must win, as in torch.cummax
    for dim in (1, -1, 0):
        values, indices = _cummax(x, dim)
        ref = torch.cummax(x, dim)
        assert torch.equal(values, ref.values) and torch.equal(indices, ref.indices)


def test_cli_torch_export_end_to_end(adafocus_onnx, tmp_path, capsys):
    model, src, _, _ = adafocus_onnx
    out = tmp_path / "model.pt2"
    assert main(["export", src, "--out", str(out)]) == 0  # the suffix picks torch-export
    assert "torch-export" in capsys.readouterr().out
    program = torch.export.load(str(out))
    frames = clips(2, 4, seed=11)
    with torch.no_grad():
        got = dict(zip(["logits", "actions", "locations", "offsets"], program.module()(frames)))
    assert_matches_eager(got, eager(model, frames), exact_actions=True)


def test_torch_export_uni_adafocus(tmp_path):
    torch.manual_seed(3)
    model = create_model("test_uni_adafocus").eval()
    report = export_torch_program(model, tmp_path / "uni.pt2")
    assert report.checked_with == "torch.export.load" and "frame_indices" in report.outputs
    assert report.largest_diff == 0.0


def test_unexportable_models_give_one_line(tmp_path, capsys):
    from conftest import tiny_model

    plus = tiny_model(skip_policy=True)
    with pytest.raises(ExportError, match=r"^AdaFocus with skip_policy \(AdaFocus\+\) cannot be exported") as err:
        export_onnx(plus, tmp_path / "plus.onnx")
    assert "\n" not in str(err.value)
    with pytest.raises(ExportError, match="TSMPlus is not an AdaFocus model"):
        export_torch_program(create_model("test_full"), tmp_path / "full.pt2")
    src = save_model(plus, tmp_path / "plus.pt")
    assert main(["export", src, "--out", str(tmp_path / "plus.onnx")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and "skip_policy" in err_lines[0]
    assert not (tmp_path / "plus.onnx").exists()
    assert main(["export", src, "--out", str(tmp_path / "m.pt"), "--no-check"]) == 2
    assert "apply to --format onnx / torch-export only" in capsys.readouterr().err
    assert main(["export", src, "--out", str(tmp_path / "m.onnx"), "--format", "torch-export"]) == 2
    assert "that suffix is for --format onnx" in capsys.readouterr().err
