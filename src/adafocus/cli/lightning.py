"""``adafocus fit | validate | test | predict --config ...``: LightningCLI over the stage modules.

LightningCLI's own ``--help`` imports Lightning and every stage class (seconds); ``adafocus fit
--help`` prints the short guide below instead, and ``--help-all`` gives LightningCLI's full list.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import UsageError
from ..resources import resolve_config_args

COMMANDS = ("fit", "validate", "test", "predict")

_GUIDE = """\
usage: adafocus {cmd} --config CONFIG.yaml [--model.init_args.NAME VALUE] [--data.init_args.NAME VALUE]
                 [--trainer.NAME VALUE] [--ckpt_path CKPT] [--print_config]

LightningCLI {cmd} over the adafocus training stages; every option can sit in the YAML config or
be given on the command line (dotted names).

  -c, --config CONFIG.yaml  a config file, or one shipped with adafocus as adafocus:NAME, e.g.
                            adafocus:toy/stage1.yaml (adafocus zoo lists the paper's)
  --model CLASS             the stage: adafocus.training.FullFrameStage (0), WarmupStage (I),
                            PolicyStage (II, PPO), FinetuneStage (III)
  --model.init_args.init_from CKPT
                            weights of the previous stage (read safely: a file holding Python
                            objects is refused; --model.init_args.trust_init_from true for one you trust)
  --model.init_args.lr_*    a stage's learning rates, per part (see --model.help)
  --ckpt_path CKPT          resume this same stage (Lightning's own checkpoint loading)
  --trainer.devices N --trainer.strategy ddp --trainer.num_nodes M
                            multi-GPU / multi-node (Lightning's environment variables)
  --print_config            print the resolved config and stop{extra}

More: adafocus {cmd} --model.help WarmupStage (a stage's options), --data.help VideoDataModule,
adafocus {cmd} --help-all (every LightningCLI option; imports Lightning, a few seconds).
"""
_PREDICT_EXTRA = """
  --trainer.default_root_dir DIR
                            where predictions.jsonl is written (one JSON object per video)"""


def is_guide_request(argv: Sequence[str]) -> bool:
    """``adafocus fit --help`` (nothing else): the short guide, without importing Lightning."""
    return len(argv) == 2 and argv[0] in COMMANDS and argv[1] in ("-h", "--help")


def print_guide(command: str) -> None:
    print(_GUIDE.format(cmd=command, extra=_PREDICT_EXTRA if command == "predict" else ""))


def run(argv: Sequence[str], *, from_command_line: bool) -> int:
    """Run LightningCLI for ``argv`` (``[command, ...]``); ``--help-all`` is LightningCLI's ``--help``."""
    if is_guide_request(argv):
        print_guide(argv[0])
        return 0
    argv = ["--help" if a == "--help-all" else a for a in argv]
    try:
        argv = resolve_config_args(argv)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    from ..training.cli import run_cli

    if from_command_line:  # LightningCLI reads sys.argv itself (given both, it warns of a mix-up)
        sys.argv[1:] = argv
        run_cli(None)
    else:
        run_cli(argv)
    return 0
