import numpy as np
import pytest
import torch
from PIL import Image

from adafocus.data.transforms import build_transform
from adafocus.viz import SKIP_COLOUR, denormalise, draw_boxes, save_gif, save_gif_grid, save_strip_png


def _ring(h, w, y, x, p, lw):
    """Expected mask: the patch square minus its interior shrunk by the line width."""
    m = np.zeros((h, w), bool)
    m[max(0, y) : y + p, max(0, x) : x + p] = True
    m[max(0, y + lw) : y + p - lw, max(0, x + lw) : x + p - lw] = False
    return m


def test_draw_boxes_exactly_on_the_border():
    frames = np.full((2, 20, 24, 3), 7, np.uint8)
    before = frames.copy()
    out = draw_boxes(frames, [[2, 3], [10, 12]], 8, colour=(255, 0, 0), width=2)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    assert np.array_equal(frames, before)  # a new array, the input is untouched
    for t, (y, x) in enumerate([(2, 3), (10, 12)]):
        drawn = (out[t] != 7).any(-1)
        assert np.array_equal(drawn, _ring(20, 24, y, x, 8, 2)), t
        assert out[t, drawn].tolist() == [[255, 0, 0]] * int(drawn.sum())
    # a few pixels by hand: corners and the second line row are box, the inside and outside are not
    assert tuple(out[0, 2, 3]) == (255, 0, 0) and tuple(out[0, 9, 10]) == (255, 0, 0)
    assert tuple(out[0, 3, 6]) == (255, 0, 0)  # second row of the top line (width 2)
    assert tuple(out[0, 4, 5]) == (7, 7, 7)  # just inside the line
    assert tuple(out[0, 1, 3]) == (7, 7, 7) and tuple(out[0, 2, 11]) == (7, 7, 7)  # just outside


def test_draw_boxes_skipped_frames_thin_grey_and_tensor_input():
    frames = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)  # (T, 3, H, W) is accepted
    out = draw_boxes(frames, torch.tensor([[0, 0], [4, 4]]), 12, keep=torch.tensor([1, 0]), width=2)
    assert out.shape == (2, 16, 16, 3)
    drawn = out[1].any(-1)
    assert np.array_equal(drawn, _ring(16, 16, 4, 4, 12, 1))  # skipped: one pixel wide ...
    assert {tuple(c) for c in out[1, drawn]} == {SKIP_COLOUR}  # ... and grey
    assert np.array_equal(out[0].any(-1), _ring(16, 16, 0, 0, 12, 2))  # the kept frame: the full width


def test_draw_boxes_checks_shapes_and_clips():
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    out = draw_boxes(frames, [[4, 4]], 8)  # box partly outside the frame: clipped, no error
    assert out[0, 4, 4].any() and not out[0, 6, 6].any()
    with pytest.raises(ValueError, match="offsets"):
        draw_boxes(frames, [[0, 0], [1, 1]], 4)
    with pytest.raises(ValueError, match="uint8"):
        draw_boxes(frames.astype(np.float32), [[0, 0]], 4)


def test_denormalise_inverts_the_eval_transform():
    clip = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    x = build_transform(train=False, input_size=32, scale_size=32)(clip)
    back = denormalise(x)
    assert back.dtype == np.uint8 and back.shape == (3, 32, 32, 3)
    assert np.abs(back.astype(int) - clip.permute(0, 2, 3, 1).numpy().astype(int)).max() <= 1


def test_png_strip_and_gifs(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (5, 32, 40, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (3, 24, 24, 3), dtype=np.uint8)
    png = tmp_path / "sub" / "strip.png"
    save_strip_png(png, [a, b], ["label 3 / pred 3 (0.97)", "pred 1 (0.50)"], max_frames=4)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 100 and im.height > 50
    gif = tmp_path / "a.gif"
    save_gif(gif, a, fps=5)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 5 and im.size == (40, 32)
    grid = tmp_path / "grid.gif"
    save_gif_grid(grid, [a, b], fps=4, gap=4)
    with Image.open(grid) as im:
        assert im.n_frames == 5 and im.size == (40 + 4 + 24, 32)
    with pytest.raises(ValueError, match="titles"):
        save_strip_png(tmp_path / "x.png", [a], ["one", "two"])
