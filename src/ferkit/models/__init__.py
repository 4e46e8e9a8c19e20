"""The model zoo: a registry of FER architectures, checkpoints, and complexity counters.

    from ferkit.models import create_model, list_models, get_model_spec
    model = create_model("flagship")                 # normalised (N, 1, 48, 48) -> logits (N, 7)
    spec = get_model_spec("flagship")                # input_size, in_channels, mean, std, ...

Families (one file each): `simple_cnn` and `fer_model0` (baselines), `vgg_*`, `resnet18` and
`efficientnet_b0` (torchvision, for transfer learning), `resnet18_fer` (48x48 from scratch),
and `flagship` (ours). docs/models.md compares them.
"""

# Importing the family modules registers their models; those built on torchvision (resnet,
# efficientnet) are imported when first asked for (registry.TORCHVISION_FAMILIES).
from ferkit.models import flagship, simple_cnn, vgg  # noqa: F401
from ferkit.models.checkpoint import (
    checkpoint_dict,
    checkpoint_metadata,
    load_checkpoint,
    save_checkpoint,
)
from ferkit.models.complexity import count_macs, count_parameters
from ferkit.models.freeze import FREEZE_POLICIES, freeze, param_groups
from ferkit.models.registry import (
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = [
    "FREEZE_POLICIES",
    "ModelSpec",
    "checkpoint_dict",
    "checkpoint_metadata",
    "count_macs",
    "count_parameters",
    "create_model",
    "freeze",
    "get_model_spec",
    "list_models",
    "load_checkpoint",
    "param_groups",
    "register_model",
    "save_checkpoint",
]
