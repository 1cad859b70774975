"""Interoperability with weights trained elsewhere (official AdaFocus V1 incl. Sth-Sth, AdaFocusV2 and Uni-AdaFocus
checkpoints)."""

from .official import (
    ConversionResult,
    convert_official_checkpoint,
    load_converted,
    load_official_checkpoint,
    official_config,
    official_state_dict,
    save_converted,
)
from .official_tsm import (
    convert_official_tsm_checkpoint,
    is_official_tsm,
    official_tsm_config,
    official_tsm_state_dict,
)
from .official_uni import (
    convert_official_uni_checkpoint,
    is_official_uni,
    map_official_uni_key,
    official_uni_config,
    official_uni_state_dict,
)
from .official_v2 import (
    convert_official_v2_checkpoint,
    is_official_v2,
    map_official_v2_key,
    official_v2_config,
    official_v2_state_dict,
)
from .official_v2_tsm import (
    convert_official_v2_tsm_checkpoint,
    is_official_v2_tsm,
    official_v2_tsm_config,
    official_v2_tsm_state_dict,
)

__all__ = [
    "ConversionResult",
    "convert_official_checkpoint",
    "convert_official_tsm_checkpoint",
    "convert_official_uni_checkpoint",
    "convert_official_v2_checkpoint",
    "convert_official_v2_tsm_checkpoint",
    "is_official_tsm",
    "is_official_uni",
    "is_official_v2",
    "is_official_v2_tsm",
    "load_converted",
    "load_official_checkpoint",
    "map_official_uni_key",
    "map_official_v2_key",
    "official_config",
    "official_state_dict",
    "official_tsm_config",
    "official_tsm_state_dict",
    "official_uni_config",
    "official_uni_state_dict",
    "official_v2_config",
    "official_v2_state_dict",
    "official_v2_tsm_config",
    "official_v2_tsm_state_dict",
    "save_converted",
]
