"""``adafocus demo``: AdaFocus trained and judged end to end on a CPU (see :mod:`.run`)."""

from .run import DEFAULT, FAST, DemoPlan, run_demo

__all__ = ["DEFAULT", "FAST", "DemoPlan", "run_demo"]
