"""The project's own exception types for bad files and bad arguments (no heavy imports: the
command line catches them before torch is loaded). Their messages are one line that names the
file or argument at fault; the command line prints exactly that line and exits non-zero."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint or model file; the message names the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


class UsageError(ValueError):
    """A command-line option that cannot do what was asked; the message says what to use instead."""
