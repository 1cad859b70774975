import json

import pytest
import torch
from conftest import tiny_model

from adafocus import AdaFocus, count_flops
from adafocus.cli import main
from adafocus.flops import count_macs, paper_table


def test_paper_configurations_within_one_percent():
    rows = paper_table()
    assert len(rows) == 13  # one per architecture with a paper figure: V1 2 + 3 (TSM), V2 3 + 4 (TSM), Uni 1
    for row in rows:
        assert abs(row["rel_diff"]) <= 0.01, row


def test_default_model_whole_forward_equals_table():
    model = AdaFocus(num_classes=200).eval()
    whole = count_macs(model, torch.zeros(1, 16, 3, 224, 224)) / 1e9
    assert whole == pytest.approx(count_flops(model, 16).total, rel=1e-12)
    # the backbones alone, per frame, as torch's counter reports them (issue's orientation figures)
    assert count_macs(model.local_cnn, torch.zeros(1, 3, 128, 128)) / 1e9 == pytest.approx(1.3366 - 0.002, abs=1e-3)


@pytest.mark.parametrize("classifier", ["gru", "fc"])
def test_tiny_model_forward_equals_components(classifier):
    model = tiny_model(classifier=classifier).eval()
    whole = count_macs(model, torch.zeros(1, 6, 3, 64, 64)) / 1e9
    br = count_flops(model, 6)
    assert whole == pytest.approx(br.total, rel=1e-12)
    assert br.policy > 0 and br.classifier > 0 and br.local_cnn > 0


def test_keep_ratio_scales_local_cost():
    model = tiny_model().eval()
    full, half = count_flops(model, 8), count_flops(model, 8, keep_ratio=0.5)
    assert half.local_cnn == pytest.approx(full.local_cnn / 2)
    assert half.global_cnn == full.global_cnn


def test_cli_flops_table(capsys):
    assert main(["flops"]) == 0
    text = capsys.readouterr().out
    assert "1 multiply-add = 1 FLOP" in text
    for name in (
        "adafocus_mn2_rn50_p128 T=16",
        "adafocus_mn2_rn50_p160",
        "adafocus_tsm_p144 T=8+12",
        "adafocus_tsm_p176",
        "adafocus_v2_mn2_rn50_p96 T=16",
        "adafocus_v2_tsm_p128 T=8+12",
        "uni_adafocus_mn2_rn50_p128 T=16+16 of 48",
    ):
        assert name in text
    assert main(["flops", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    v2 = [17.6, 27.0, 39.0, 18.5, 23.5, 27.5, 33.7]
    assert [r["paper"] for r in rows] == [26.6, 38.6, 23.5, 27.5, 33.7, *v2, 27.2]


def test_cli_verify_custom(capsys):
    code = main(
        [
            "flops",
            "--custom",
            "--verify",
            "--global-backbone",
            "tiny_cnn",
            "--local-backbone",
            "tiny_cnn",
            "--frames",
            "4",
            "--patch-size",
            "96",
        ]
    )
    assert code == 0
    assert "verify: whole offline forward" in capsys.readouterr().out
