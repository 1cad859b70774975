import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adafocus.checkpoint import load_model
from adafocus.training import PolicyStage
from adafocus.training.cli import run_cli
from adafocus.training.ppo import normalised_returns, ppo_loss
from adafocus.training.reward import confidence, discounted_returns, rollout

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "lightning_configs" / "toy"
QUIET = ["--trainer.enable_progress_bar=false"]


def fit(stage: int | str, tmp_path: Path, *extra: str) -> Path:
    """Run ``adafocus fit`` for a toy stage (1-3, or "v2": AdaFocusV2's one stage) in-process; return the
    last checkpoint."""
    name = f"stage{stage}" if isinstance(stage, int) else stage
    out = tmp_path / name
    run_cli(
        [
            "fit",
            "--config",
            str(TOY / f"{name}.yaml"),
            f"--trainer.default_root_dir={out}",
            f"--trainer.logger.init_args.save_dir={out}",
            *QUIET,
            *extra,
        ]
    )
    ckpts = sorted(glob.glob(str(out / "**" / "*.ckpt"), recursive=True), key=os.path.getmtime)
    assert ckpts, f"no checkpoint under {out}"
    return Path(ckpts[-1])


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]  # stage checkpoints are plain data
    return {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}


def changed(a: dict, b: dict) -> set[str]:
    return {k.split(".")[0] for k in a if k in b and not torch.equal(a[k], b[k]) and "num_batches" not in k}


def test_discounted_returns_hand_computed():
    r = torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]])
    expected = torch.tensor([[1 + 0.7**2 * 2, 0.7 * 2, 2.0], [0.5 - 0.7, -1.0, 0.0]])
    torch.testing.assert_close(discounted_returns(r, 0.7), expected)
    n = normalised_returns(r, 0.7)
    torch.testing.assert_close(n.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_confidence_and_reward_sign_on_fixed_example():
    logits = torch.log(torch.tensor([[[0.2, 0.8], [0.6, 0.4]]]))
    torch.testing.assert_close(confidence(logits, torch.tensor([1])), torch.tensor([[0.8, 0.4]]))


def test_ppo_loss_hand_computed():
    from conftest import tiny_model

    model = tiny_model()
    fmap = torch.randn(2, 3, model.policy.in_channels, *model.policy.feature_hw)
    out = model.policy(fmap)
    actions = out.logits.argmax(-1)
    lp, values, ent = model.policy.evaluate(fmap, actions)
    returns = torch.randn(2, 3)
    loss, stats = ppo_loss(model.policy, fmap, actions, lp.detach(), returns)
    # ratio = 1 at the rollout's own log-probs: surrogate = advantage
    adv = returns - values.detach()
    expected = -adv.mean() + 0.5 * (values - returns).pow(2).mean() - 0.01 * ent.mean()
    torch.testing.assert_close(loss, expected)
    assert stats["clip_frac"] == 0


def test_rollout_rewards_match_definition():
    from conftest import tiny_model

    model = tiny_model().eval()
    frames, labels = torch.randn(3, 4, 3, 64, 64), torch.tensor([0, 1, 2])
    gen = torch.Generator().manual_seed(1)
    ro = rollout(model, frames, labels, generator=gen)
    assert ro.rewards.shape == (3, 4) and ro.rewards.abs().max() <= 1
    # replay: chosen patches give ro.logits; rewards = p(chosen) - p(random) at each step
    locs = model.actions_to_locations(ro.actions)
    torch.testing.assert_close(model(frames, locations=locs).logits, ro.logits)
    gen = torch.Generator().manual_seed(1)
    ro2 = rollout(model, frames, labels, generator=gen)
    torch.testing.assert_close(ro.rewards, ro2.rewards)


def test_rollout_skip_rewards_zero_when_skipped():
    from conftest import tiny_model

    model = tiny_model(skip_policy=True).eval()
    ro = rollout(
        model,
        torch.randn(4, 5, 3, 64, 64),
        torch.arange(4) % 5,
        generator=torch.Generator().manual_seed(0),
        skip_penalty=1e-3,
    )
    assert ro.keep is not None and set(ro.keep.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(ro.keep_rewards[ro.keep == 0] == 0)


def test_three_stages_through_cli(tmp_path):
    c1 = fit(1, tmp_path, "--trainer.max_epochs=2")
    c2 = fit(2, tmp_path, f"--model.init_args.init_from={c1}")
    c3 = fit(3, tmp_path, f"--model.init_args.init_from={c2}")
    w1, w2, w3 = weights(c1), weights(c2), weights(c3)
    assert changed(w1, w2) == {"policy"}
    assert changed(w2, w3) == {"classifier"}
    ck = torch.load(c3, map_location="cpu", weights_only=True)
    assert ck["adafocus_config"]["global_backbone"] == "tiny_cnn"


def test_stage2_adafocus_plus_trains_both_policies(tmp_path):
    c1 = fit(1, tmp_path, "--model.init_args.net.init_args.skip_policy=true")
    c2 = fit(
        2,
        tmp_path,
        f"--model.init_args.init_from={c1}",
        "--model.init_args.net.init_args.skip_policy=true",
        "--model.init_args.skip_penalty=1e-4",
    )
    assert changed(weights(c1), weights(c2)) == {"policy", "skip_policy"}
    c3 = fit(
        3,
        tmp_path,
        f"--model.init_args.init_from={c2}",
        "--model.init_args.net.init_args.skip_policy=true",
        "--model.init_args.keep_ratio=0.5",
    )
    rho = weights(c3)["keep_threshold"]
    assert 0 < rho < 1 and rho != 0.5


def test_stage2_resume_is_exact(tmp_path):
    c1 = fit(1, tmp_path)
    # interrupted at an epoch boundary: Lightning restarts a partly-run epoch from its first batch
    full = fit(2, tmp_path / "full", f"--model.init_args.init_from={c1}", "--trainer.max_epochs=2")
    half = fit(2, tmp_path / "half", f"--model.init_args.init_from={c1}", "--trainer.max_epochs=1")
    resumed = fit(
        2, tmp_path / "resumed", f"--model.init_args.init_from={c1}", "--trainer.max_epochs=2", f"--ckpt_path={half}"
    )
    wf, wr = weights(full), weights(resumed)
    assert changed(weights(half), wf) == {"policy"}
    for k in wf:
        torch.testing.assert_close(wr[k], wf[k], rtol=0, atol=0, msg=k)
    opt = torch.load(resumed, map_location="cpu", weights_only=True)["optimizer_states"][0]
    assert opt["state"], "Adam state was not checkpointed"


def test_v2_one_stage_trains_every_part_and_resumes_exactly(tmp_path):
    full = fit("v2", tmp_path / "full", "--trainer.max_epochs=2")
    # interrupted after the first epoch (16 toy clips, batch 4): the same run, stopped by max_steps
    half = fit("v2", tmp_path / "half", "--trainer.max_epochs=2", "--trainer.max_steps=4")
    resumed = fit("v2", tmp_path / "resumed", "--trainer.max_epochs=2", f"--ckpt_path={half}")
    assert type(load_model(full)).__name__ == "AdaFocusV2"
    val = tmp_path / "val"
    cli = run_cli(["validate", "--config", str(TOY / "v2.yaml"), f"--ckpt_path={full}", *QUIET,
                   f"--trainer.default_root_dir={val}", f"--trainer.logger.init_args.save_dir={val}"])  # fmt: skip
    assert 0 <= cli.trainer.callback_metrics["val/top1"] <= 1
    wf, wr = weights(full), weights(resumed)
    # one stage: f_G, pi, f_L, f_C and the auxiliary heads all learn in the second epoch
    assert changed(weights(half), wf) == {"global_cnn", "local_cnn", "policy", "classifier", "global_fc", "local_fc"}
    for k in wf:
        torch.testing.assert_close(wr[k], wf[k], rtol=0, atol=0, msg=k)
    sched = torch.load(resumed, map_location="cpu", weights_only=True)["lr_schedulers"][0]
    assert sched["last_epoch"] == 2  # the cosine is set per epoch (official) and restored with the loop


def test_every_config_prints(capsys):
    configs = sorted((ROOT / "lightning_configs").rglob("*.yaml"))
    assert configs
    for cfg in configs:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(["fit", "--config", str(cfg), "--print_config"])
        assert exit_info.value.code == 0, cfg
        text = capsys.readouterr().out
        assert "class_path: adafocus.training." in text, cfg


def test_command_line_fit_does_not_pass_argv_twice(monkeypatch, capsys):
    import warnings

    from adafocus.cli import main

    monkeypatch.setattr(sys, "argv", ["adafocus", "fit", "--config", str(TOY / "stage1.yaml"), "--print_config"])
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as exit_info:
        warnings.simplefilter("always")
        main()  # as the console script calls it
    assert exit_info.value.code == 0 and "class_path: adafocus.training." in capsys.readouterr().out
    assert not [w for w in caught if "args parameter" in str(w.message)]


def test_policy_stage_freezes_before_ddp():
    stage = PolicyStage(num_classes=3, net=lambda k: __import__("conftest").tiny_model(num_classes=k))
    trainable = {n.split(".")[1] for n, p in stage.named_parameters() if p.requires_grad}
    assert trainable == {"policy"}
    assert not stage.automatic_optimization


DDP_SCRIPT = r"""
import sys
from adafocus.training.cli import run_cli
run_cli(sys.argv[1:])
"""


def _run(args, env_extra=None, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests"), **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", DDP_SCRIPT, *args], env=env, **kw)


@pytest.mark.parametrize("stage", [1, 2, "v2"])
def test_ddp_two_processes(tmp_path, stage):
    init = [f"--model.init_args.init_from={fit(1, tmp_path)}"] if stage == 2 else []
    out = tmp_path / "ddp"
    p = _run(
        [
            "fit",
            "--config",
            str(TOY / (f"stage{stage}.yaml" if isinstance(stage, int) else f"{stage}.yaml")),
            "--trainer.devices=2",
            "--trainer.strategy=ddp_spawn",
            f"--trainer.default_root_dir={out}",
            f"--trainer.logger.init_args.save_dir={out}",
            *QUIET,
            *init,
        ]
    )
    assert p.wait(timeout=300) == 0
    assert len(glob.glob(str(out / "**" / "*.ckpt"), recursive=True)) == 1


def test_two_nodes_on_loopback(tmp_path):
    out = tmp_path / "nodes"
    port = str(29500 + os.getpid() % 1000)
    procs = [
        _run(
            [
                "fit",
                "--config",
                str(TOY / "stage1.yaml"),
                "--trainer.num_nodes=2",
                "--trainer.devices=1",
                "--trainer.strategy=ddp",
                f"--trainer.default_root_dir={out}",
                f"--trainer.logger.init_args.save_dir={out}",
                *QUIET,
            ],
            {
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "NODE_RANK": str(rank),
                "WORLD_SIZE": "2",
                "LOCAL_RANK": "0",
            },
        )
        for rank in (0, 1)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert len(glob.glob(str(out / "**" / "*.ckpt"), recursive=True)) == 1


def test_export_roundtrip_and_validate_with_each_policy(tmp_path, capsys):
    from adafocus.cli import main
    from adafocus.training.export import load_exported

    c1 = fit(1, tmp_path)
    out = tmp_path / "model.pt"
    assert main(["export", str(c1), "--out", str(out)]) == 0
    model = load_exported(out).eval()
    ref = weights(c1)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ref[k])
    results = {}
    for policy in ("learned", "random", "centre", "gaussian"):
        cli = run_cli(
            [
                "validate",
                "--config",
                str(TOY / "stage1.yaml"),
                f"--model.init_args.eval_policy={policy}",
                f"--model.init_args.init_from={c1}",
                f"--trainer.default_root_dir={tmp_path}",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
                *QUIET,
            ]
        )
        metrics = cli.trainer.callback_metrics
        assert 0 <= float(metrics["val/top1"]) <= 1 and "val/online_top1_t04" in metrics
        results[policy] = float(metrics["val/loss"])
    assert len(set(results.values())) > 1  # the flag really changes the patches


def test_online_accuracy_and_map_metrics():
    from adafocus.training.metrics import OnlineAccuracy, offline_metrics

    acc = OnlineAccuracy()
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]])  # (B=2, T=2, K=2)
    acc.update(logits, torch.tensor([1, 0]))
    torch.testing.assert_close(acc.compute(), torch.tensor([1.0, 0.5]))
    acc.update(logits, torch.tensor([0, 1]))
    torch.testing.assert_close(acc.compute(), torch.tensor([0.5, 0.5]))
    m = offline_metrics(3, multi_label=True)
    m["mAP"].update(torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]]), torch.tensor([[1, 0, 0], [0, 1, 1]]))
    assert 0 < float(m["mAP"].compute()) <= 1


def test_wandb_logger_offline_is_a_one_line_change(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_cli(
        [
            "fit",
            "--config",
            str(TOY / "stage1.yaml"),
            "--trainer.logger=pytorch_lightning.loggers.WandbLogger",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
        ]
    )
    assert list(tmp_path.rglob("offline-run-*")), "no offline wandb run written"


def test_stage1_and_2_on_real_videos_through_cli(tmp_path):
    """Integration: the synthetic MP4 set, the VideoDataModule and the stage modules together."""
    from adafocus.data import synth

    ds = synth.generate(
        tmp_path / "synth", num_train=8, num_val=4, num_test=4, num_frames=4, size=64, num_classes=3, patch_hint=32
    )
    data = [
        "--data=adafocus.data.VideoDataModule",
        f"--data.train_list={ds['train']}",
        f"--data.val_list={ds['val']}",
        f"--data.root={ds['root']}",
        "--data.num_classes=3",
        "--data.num_frames=4",
        "--data.input_size=64",
        "--data.scale_size=64",
        "--data.flip=false",
        "--data.batch_size=4",
        "--data.num_workers=0",
    ]
    c1 = fit(1, tmp_path, *data)
    c2 = fit(2, tmp_path, f"--model.init_args.init_from={c1}", *data)
    assert changed(weights(c1), weights(c2)) == {"policy"}


def test_stage0_full_frames_hands_backbones_to_stage1(tmp_path):
    c0 = fit(0, tmp_path)
    w0 = weights(c0)
    sd0 = torch.load(c0, map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith("local_head.") for k in sd0)
    w1 = weights(fit(1, tmp_path, f"--model.init_args.init_from={c0}"))
    assert changed(w0, w1) == {"local_cnn", "classifier"}  # f_G frozen in stage I: stage 0's f_G kept
    fresh = weights(fit(1, tmp_path / "fresh"))  # same seed, no hand-off: f_G stays at its random init
    assert "global_cnn" in changed(fresh, w0) and "global_cnn" not in changed(w0, w1)


def test_uni_adafocus_stage_trains_both_policies_through_cli(tmp_path):
    from adafocus.cli import main

    one = fit("uni", tmp_path / "one")
    two = fit("uni", tmp_path / "two", "--trainer.max_epochs=2")
    assert main(["export", str(two), "--out", str(tmp_path / "uni.pt")]) == 0  # the same export as V1's stages
    assert type(load_model(tmp_path / "uni.pt")).__name__ == "UniAdaFocus"
    moved = changed(weights(one), weights(two))
    assert {"temporal_policy", "spatial_policy", "global_cnn", "local_cnn", "classifier", "aux_fc"} <= moved
