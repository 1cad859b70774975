"""``python -m adafocus``: the ``adafocus`` command."""

import sys

from .cli import main

sys.exit(main())
