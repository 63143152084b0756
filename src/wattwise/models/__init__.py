"""Image classifiers: a registry over torchvision architectures and ``small_cnn``.

>>> from wattwise.models import create_model, inspect_model, list_models
>>> model = create_model("resnet18", num_classes=10, in_channels=1, input_size=28)
>>> list_models("mobilenet*")
['mobilenet_v2', 'mobilenet_v3_large', 'mobilenet_v3_small']

See ``docs/models.md`` for the small-input stems, grayscale inputs, width and weights.
"""

from __future__ import annotations

# Importing the builder modules registers their models.
from wattwise.models import small_cnn as _small_cnn  # noqa: F401
from wattwise.models import torchvision_models as _torchvision_models  # noqa: F401
from wattwise.models.inspect import (
    ModelStats,
    count_flops,
    count_macs,
    count_parameters,
    format_stats,
    inspect_model,
    parse_input_shape,
    serialized_size_bytes,
    stats_table,
)
from wattwise.models.registry import (
    DEFAULT_BN_MOMENTUM,
    ModelEntry,
    ModelRegistry,
    check_model_spec,
    create_model,
    create_model_from_spec,
    list_models,
    register_model,
    registry,
)
from wattwise.models.small_cnn import SmallCNN
from wattwise.models.weights import (
    WeightsReport,
    load_state_dict_adapted,
    load_state_dict_exact,
    load_torch_file,
    read_state_dict,
)

__all__ = [
    "DEFAULT_BN_MOMENTUM",
    "ModelEntry",
    "ModelRegistry",
    "ModelStats",
    "SmallCNN",
    "WeightsReport",
    "check_model_spec",
    "count_flops",
    "count_macs",
    "count_parameters",
    "create_model",
    "create_model_from_spec",
    "format_stats",
    "inspect_model",
    "list_models",
    "load_state_dict_adapted",
    "load_state_dict_exact",
    "load_torch_file",
    "parse_input_shape",
    "read_state_dict",
    "register_model",
    "registry",
    "serialized_size_bytes",
    "stats_table",
]
