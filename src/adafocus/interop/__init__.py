"""Interoperability with weights trained elsewhere (official AdaFocus checkpoints)."""

from .official import (
    ConversionResult,
    convert_official_checkpoint,
    load_converted,
    load_official_checkpoint,
    official_config,
    official_state_dict,
    save_converted,
)

__all__ = [
    "ConversionResult",
    "convert_official_checkpoint",
    "load_converted",
    "load_official_checkpoint",
    "official_config",
    "official_state_dict",
    "save_converted",
]
