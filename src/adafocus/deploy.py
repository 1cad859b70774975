"""Deployment export: an AdaFocus model as an ONNX graph or a ``torch.export`` program for offline inference.

::

    from adafocus.deploy import export_onnx, export_torch_program
    report = export_onnx(model, "model.onnx")          # checked against eager with onnxruntime
    report.max_abs_diff                                # largest |exported - eager| over the outputs

The exported graph takes one input, ``frames``: a batch of preprocessed clips ``(B, T, 3, H, W)``
(``B`` dynamic; ``T`` and ``H = W = input_size`` fixed, as :attr:`model.preprocess` says), and returns
the deterministic test-time pass of :meth:`~adafocus.models.base.AdaFocusBase.forward` (``policy="learned"``,
``sample=False``): ``logits`` ``(B, S, K)`` (``logits[:, -1]`` is the video's prediction), ``actions`` (the
learned policy's argmax ``(B, S)``, or the Gaussian policy's mean ``(B, S, 2)`` for AdaFocus-TSM; absent for
AdaFocusV2, whose locations are regressed), ``locations`` ``(B, T, 2)`` and the crop's integer
``offsets`` ``(B, T, 2)``; Uni-AdaFocus adds ``frame_indices`` and ``window_sides``.

Both formats are made from one :func:`torch.export.export` trace. ONNX uses the ``torch.export``-based
exporter (``torch.onnx.export(..., dynamo=True)``, needs ``onnx`` and ``onnxscript``): the older
TorchScript exporter cannot take the crop's ``unfold`` with a dynamic batch. One operator has no ONNX
translation, ``cummax`` (AdaFocusV2's f_C), and is decomposed into a loop over the fixed frames first.
AdaFocus+ (``skip_policy``) is refused: which frames f_L runs on is data-dependent.
"""

from __future__ import annotations

import copy
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .version import __version__

OUTPUTS = ("logits", "actions", "locations", "offsets", "frame_indices", "window_sides")
FORMATS = ("onnx", "torch-export")
INSTALL_HINT = "pip install 'adafocus[export]'"


class ExportError(ValueError):
    """A model that cannot be exported, or an export that does not match eager; one line naming the model."""


@dataclass
class ExportReport:
    """What an export wrote and how it compared with the eager model."""

    path: str
    format: str
    outputs: list[str]
    input_shape: list[int | str]  # (B, T, 3, H, W), "batch" where dynamic
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # per output, on a clip of another batch size
    checked_with: str | None = None  # "onnxruntime", "torch.export.load", or None (not checked)

    @property
    def largest_diff(self) -> float | None:
        """The largest ``|exported - eager|`` over all outputs (``None``: not checked)."""
        return max(self.max_abs_diff.values()) if self.max_abs_diff else None


class InferenceGraph(nn.Module):
    """The deterministic test-time pass of an AdaFocus model as a function of the frames alone:
    ``frames (B, T, 3, H, W) -> tuple of outputs`` (named by ``outputs``, fields of ``AdaFocusOutput``)."""

    def __init__(self, model: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.outputs = outputs

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(frames, policy="learned", sample=False, policy_stats=False)
        return tuple(getattr(out, name) for name in self.outputs)


def check_exportable(model: nn.Module) -> None:
    """Raise :class:`ExportError` (one line) for a model this module cannot export."""
    from .models.base import AdaFocusBase

    name = type(model).__name__
    if not isinstance(model, AdaFocusBase):
        raise ExportError(f"{name} is not an AdaFocus model (AdaFocus, AdaFocusTSM, AdaFocusV2, UniAdaFocus): "
                          "deployment export takes those only")  # fmt: skip
    if getattr(model, "skip_policy", None) is not None:
        raise ExportError(f"{name} with skip_policy (AdaFocus+) cannot be exported: which frames f_L runs on is "
                          "data-dependent; export it without the skip policy, or use adafocus.save_model")  # fmt: skip


def clip_shape(model: nn.Module, num_frames: int | None = None) -> tuple[int, int]:
    """``(T, input_size)`` of the exported input: ``num_frames``, else the model's preprocessing's."""
    from .preprocess import preprocess_for

    pre = preprocess_for(model, getattr(model, "preprocess", None))
    t = num_frames or pre.num_frames
    if model.clip_frames is not None and t != model.clip_frames:
        raise ExportError(f"num_frames={t}: {type(model).__name__} takes clips of exactly {model.clip_frames} frames")
    return t, int(model.input_size)


def _example(batch: int, t: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def trace(
    model: nn.Module, *, num_frames: int | None = None, dynamic_batch: bool = True
) -> tuple[torch.export.ExportedProgram, InferenceGraph, tuple[int, int]]:
    """:func:`torch.export.export` of :class:`InferenceGraph` (on an eval-mode CPU copy of ``model``).

    Returns ``(program, the eager graph it was traced from, (T, input_size))``.
    """
    check_exportable(model)
    t, size = clip_shape(model, num_frames)
    eager = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its mode and device
    example = _example(2, t, size, seed=0)
    with torch.no_grad():
        probe = eager(example, policy="learned", sample=False, policy_stats=False)
    outputs = tuple(n for n in OUTPUTS if isinstance(getattr(probe, n, None), torch.Tensor))
    graph = InferenceGraph(eager, outputs).eval()
    dynamic = {"frames": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # nn.GRU re-assigns its flat weights while traced; harmless, the program holds them as parameters
            warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights")
            program = torch.export.export(graph, (example,), dynamic_shapes=dynamic)
    except Exception as err:
        raise ExportError(f"{type(model).__name__}: torch.export cannot trace it ({_first_line(err)})") from None
    return program, graph, (t, size)


def _cummax(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.cummax`` as a loop over ``dim`` (a fixed, small size: the frames), which ONNX can express.
    On ties the later index wins, as in ``torch.cummax``."""
    dim = dim % x.dim()
    running = x.select(dim, 0)
    index = torch.zeros_like(running, dtype=torch.long)
    values, indices = [running], [index]
    for i in range(1, x.shape[dim]):
        xi = x.select(dim, i)
        later = xi >= running
        running = torch.where(later, xi, running)
        index = torch.where(later, torch.full_like(index, i), index)
        values.append(running)
        indices.append(index)
    return torch.stack(values, dim), torch.stack(indices, dim)


def _metadata(model: nn.Module, outputs: tuple[str, ...], t: int, size: int) -> dict[str, str]:
    from .checkpoint import model_class_name
    from .preprocess import preprocess_for

    try:
        model_class = model_class_name(model)
    except (KeyError, ValueError, TypeError):
        model_class = type(model).__name__
    names = getattr(model, "class_names", None)
    return {
        "adafocus_version": __version__,
        "model_class": model_class,
        "input": json.dumps({"frames": ["batch", t, 3, size, size]}),
        "outputs": json.dumps(list(outputs)),
        "preprocess": json.dumps(preprocess_for(model, getattr(model, "preprocess", None)).to_dict()),
        "class_names": json.dumps(list(names) if names is not None else None),
    }


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    dynamic_batch: bool = True,
    check: bool = True,
    atol: float = 1e-4,
) -> ExportReport:
    """Write ``model`` as an ONNX graph (see the module doc) to ``path``.

    Args:
        num_frames: T of the exported input (default: the model's preprocessing).
        dynamic_batch: a dynamic batch dimension (else the graph takes B = 2 only).
        check: run the file with onnxruntime (when installed) on a random clip of another batch size and
            compare with eager: offsets and actions must be equal, the rest within ``atol``.

    Raises:
        ExportError: a model that cannot be exported, missing ``onnx`` / ``onnxscript``, or a mismatch.
    """
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            raise ExportError(f"ONNX export needs the package {module!r}: {INSTALL_HINT}") from None
    program, graph, (t, size) = trace(model, num_frames=num_frames, dynamic_batch=dynamic_batch)
    name = type(model).__name__
    try:
        if any(node.target is torch.ops.aten.cummax.default for node in program.graph.nodes):
            # only then: a decomposition pass costs as much as the exporter's own one that follows
            program = program.run_decompositions({torch.ops.aten.cummax.default: _cummax})
        onnx_program = torch.onnx.export(program, dynamo=True, input_names=["frames"],
                                         output_names=list(graph.outputs), verbose=False)  # fmt: skip
    except Exception as err:
        raise ExportError(f"{name}: the ONNX exporter cannot translate it ({_first_line(err)})") from None
    onnx_program.model.metadata_props.update(_metadata(model, graph.outputs, t, size))
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    onnx_program.save(path)
    report = ExportReport(path, "onnx", list(graph.outputs), ["batch" if dynamic_batch else 2, t, 3, size, size])
    if check:
        try:
            import onnxruntime
        except ImportError:
            return report  # written, not checked: say so through checked_with=None
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

        def run(frames: torch.Tensor) -> list[torch.Tensor]:
            return [torch.from_numpy(a) for a in session.run(None, {"frames": frames.numpy()})]

        _compare(report, graph, run, t, size, dynamic_batch, atol, "onnxruntime")
    return report


def export_torch_program(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    dynamic_batch: bool = True,
    check: bool = True,
    atol: float = 1e-4,
) -> ExportReport:
    """Write ``model`` as a :func:`torch.export.save` program (``.pt2``, load with :func:`torch.export.load`
    and call ``.module()(frames)``); the metadata sits in its extra file ``adafocus.json``. Arguments as
    :func:`export_onnx` (the check reloads the file)."""
    program, graph, (t, size) = trace(model, num_frames=num_frames, dynamic_batch=dynamic_batch)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = json.dumps(_metadata(model, graph.outputs, t, size))
    torch.export.save(program, path, extra_files={"adafocus.json": meta})
    report = ExportReport(
        path, "torch-export", list(graph.outputs), ["batch" if dynamic_batch else 2, t, 3, size, size]
    )
    if check:
        loaded = torch.export.load(path).module()

        def run(frames: torch.Tensor) -> list[torch.Tensor]:
            with torch.no_grad():
                return list(loaded(frames))

        _compare(report, graph, run, t, size, dynamic_batch, atol, "torch.export.load")
    return report


def export_model(model: nn.Module, path: str | os.PathLike, fmt: str, **kwargs: Any) -> ExportReport:
    """:func:`export_onnx` (``fmt="onnx"``) or :func:`export_torch_program` (``"torch-export"``)."""
    if fmt == "onnx":
        return export_onnx(model, path, **kwargs)
    if fmt == "torch-export":
        return export_torch_program(model, path, **kwargs)
    raise ExportError(f"format={fmt!r}; choose one of {FORMATS}")


def _compare(report: ExportReport, graph: InferenceGraph, run: Any, t: int, size: int, dynamic: bool,
             atol: float, checker: str) -> None:  # fmt: skip
    """Fill ``report.max_abs_diff`` from a clip batch the trace did not see (3, or 2 for a static batch);
    integer outputs must be equal, float ones within ``atol``."""
    frames = _example(3 if dynamic else 2, t, size, seed=1)
    with torch.no_grad():
        expected = graph(frames)
    got = run(frames)
    for name, e, g in zip(graph.outputs, expected, got):
        if tuple(g.shape) != tuple(e.shape):
            raise ExportError(
                f"{report.path}: output {name!r} is {tuple(g.shape)} in {checker}, eager {tuple(e.shape)}"
            )
        diff = (g.double() - e.double()).abs().max().item() if e.numel() else 0.0
        report.max_abs_diff[name] = diff
        exact = not e.is_floating_point()  # offsets, argmax actions, frame indices
        if (exact and diff != 0) or diff > atol:
            raise ExportError(f"{report.path}: output {name!r} differs from eager by {diff:.3g} in {checker}")
    report.checked_with = checker


def _first_line(err: BaseException) -> str:
    """One line of an exporter's (multi-line, coloured) message: its exception summary's first cause."""
    lines = [re.sub(r"\x1b\[[0-9;]*m|\[[0-9;]*m", "", ln).strip() for ln in str(err).splitlines()]
    lines = [ln for ln in lines if ln]
    cause = next((ln for ln in lines if ln.startswith("<class '")), None)
    if cause:  # "<class 'torch...DispatchError'>: No ONNX function found for ..."
        kind, _, text = cause.partition(">: ")
        return f"{kind.rsplit('.', 1)[-1].rstrip(chr(39))}: {text[:200]}"
    return f"{type(err).__name__}: {(lines or [''])[0][:200]}"
