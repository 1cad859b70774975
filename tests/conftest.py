import pytest
import torch

from adafocus import AdaFocus

TINY = dict(global_backbone="tiny_cnn", local_backbone="tiny_cnn", policy_hidden_dim=32, classifier_hidden_dim=24)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_model(**kw) -> AdaFocus:
    """A randomly initialised AdaFocus small enough for CPU tests (64x64 frames, 32x32 patches)."""
    args = dict(TINY, num_classes=5, input_size=64, patch_size=32, grid_size=5, dropout=0.0)
    args.update(kw)
    return AdaFocus(**args)


class Trap:
    """A pickle payload: unpickling it runs code (``Trap.ran``); the safe loaders must refuse it."""

    ran = False

    def __reduce__(self):
        return (Trap._boom, ())

    @staticmethod
    def _boom():
        Trap.ran = True
        return "boom"
