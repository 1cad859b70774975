import pytest
import torch

from adafocus.models.crop import candidate_grid, crop_patches, pixel_offsets


@pytest.mark.parametrize("p", [96, 128, 144, 160, 176, 192])
def test_crop_equals_slice(p):
    frames = torch.arange(4 * 3 * 224 * 224, dtype=torch.float32).view(4, 3, 224, 224)
    offsets = torch.tensor([[0, 0], [224 - p, 224 - p], [7, 3], [(224 - p) // 2, 224 - p]])
    patches = crop_patches(frames, offsets, p)
    assert patches.shape == (4, 3, p, p)
    for n, (y, x) in enumerate(offsets.tolist()):
        torch.testing.assert_close(patches[n], frames[n, :, y : y + p, x : x + p], rtol=0, atol=0)


def test_crop_keeps_channels_last():
    frames = torch.randn(3, 3, 50, 70).contiguous(memory_format=torch.channels_last)
    offsets = torch.tensor([[0, 0], [10, 58], [38, 5]])
    patches = crop_patches(frames, offsets, 12)
    assert patches.is_contiguous(memory_format=torch.channels_last)
    for n, (y, x) in enumerate(offsets.tolist()):
        torch.testing.assert_close(patches[n], frames[n, :, y : y + 12, x : x + 12], rtol=0, atol=0)


def test_crop_rectangular_frame_and_grad():
    frames = torch.randn(2, 3, 40, 60, requires_grad=True)
    offsets = torch.tensor([[8, 28], [0, 0]])
    patches = crop_patches(frames, offsets, 12)
    torch.testing.assert_close(patches[0], frames[0, :, 8:20, 28:40])
    patches.sum().backward()
    assert frames.grad.sum().item() == 2 * 3 * 12 * 12


@pytest.mark.parametrize("g", [1, 5, 6, 7])
def test_candidate_grid_spans_frame(g):
    cand = candidate_grid(g)
    assert cand.shape == (g * g, 2)
    offs = pixel_offsets(cand, (224, 224), 128)
    if g == 1:
        assert offs.tolist() == [[48, 48]]
    else:
        assert offs[0].tolist() == [0, 0] and offs[-1].tolist() == [96, 96]
        assert offs[1].tolist() == [0, int(96 / (g - 1) + 1e-4)]
        # row-major: index g is the second row, first column
        assert offs[g, 1].item() == 0 and offs[g, 0].item() == offs[1, 1].item()


def test_crop_rejects_large_patch():
    with pytest.raises(ValueError, match="patch_size"):
        crop_patches(torch.zeros(1, 3, 32, 32), torch.zeros(1, 2, dtype=torch.long), 33)


def test_pixel_offsets_clamped():
    offs = pixel_offsets(torch.tensor([[-0.5, 1.5], [1.0, 0.0]]), (100, 80), 20)
    assert offs.tolist() == [[0, 60], [80, 0]]
