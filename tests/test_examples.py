import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_adafocus_inside_another_model(capsys):
    runpy.run_path(str(EXAMPLES / "adafocus_inside_another_model.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "scores:" in out and "patch top-left" in out
