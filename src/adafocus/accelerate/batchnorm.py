"""BatchNorm folding: an eval-mode BN after a convolution is an affine map, merged into the
convolution's weights and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``), so a whole memory
pass per BN disappears (MobileNet-V2 has 52).

The pairs come from the module's own dataflow (``torch.fx`` tracing: a ``BatchNorm2d`` whose only
input is a ``Conv2d`` used nowhere else), not from attribute names; a part that cannot be traced
(data-dependent control flow, such as the AdaFocus forward itself) is searched part by part.
"""

from __future__ import annotations

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` of every foldable pair below ``module`` (names relative to it)."""
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception:  # noqa: BLE001 — untraceable here: look inside each child instead
        return [(f"{name}.{c}", f"{name}.{b}") for name, child in module.named_children()
                for c, b in conv_bn_pairs(child)]  # fmt: skip
    parts = dict(module.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or type(parts[node.target]) is not nn.BatchNorm2d:
            continue  # exact type: subclasses such as timm's BatchNormAct2d also apply an activation
        src = node.args[0]
        if (isinstance(src, fx.Node) and src.op == "call_module" and isinstance(parts[src.target], nn.Conv2d)
                and len(src.users) == 1 and calls[src.target] == 1 and calls[node.target] == 1):  # fmt: skip
            pairs.append((src.target, node.target))
    return pairs


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode ``Conv2d -> BatchNorm2d`` pair of ``module`` into the convolution, in
    place (the BN becomes ``nn.Identity``); returns how many were folded. The module must be in
    eval mode (training BN normalises by batch statistics)."""
    if module.training:
        raise ValueError("fold_batchnorm needs an eval-mode module (call .eval() first)")
    n = 0
    for conv_name, bn_name in conv_bn_pairs(module):
        bn = module.get_submodule(bn_name)
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        _replace(module, conv_name, fuse_conv_bn_eval(module.get_submodule(conv_name), bn))
        _replace(module, bn_name, nn.Identity())
        n += 1
    return n


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)
