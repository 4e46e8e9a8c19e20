"""The model registry: every architecture is a builder function registered by name.

    @register_model(input_size=(48, 48))
    def simple_cnn(*, num_classes=7, in_channels=1, dropout=0.5) -> nn.Module:
        '''The basic ConvNet of the FER tutorials.'''   # first line = description

`create_model(name, ...)` builds one, `list_models()` names them all, `get_model_spec(name)`
says what input the model expects by default (size, channels, normalisation), as
torchvision's weight enums do, so that nothing downstream guesses.

Every model `create_model` returns carries `ferkit_arch` (its name) and `ferkit_kwargs` (the
keyword arguments that rebuild it, primitives only), which is what a checkpoint stores.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ferkit.errors import ConfigError, unknown
from ferkit.models._weights import load_weights, read_state_dict, with_new_head

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "register_model"]

# ImageNet RGB statistics, for the transfer models fed 3 channels.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The same statistics for a gray image (the mean over RGB), for ImageNet models adapted to
# one channel: a gray image normalised with these, through RGB-summed first-layer weights,
# gives exactly what the RGB model gives for the gray image repeated to three channels and
# normalised with them on every channel.
IMAGENET_GRAY_MEAN = (0.449,)
IMAGENET_GRAY_STD = (0.226,)

_PRIMITIVES = (bool, int, float, str, type(None))
_CALLED_WITH = ("num_classes", "in_channels")  # what create_model passes every builder


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model expects by default."""

    name: str
    input_size: tuple[int, int] = (48, 48)  # (H, W) that training and inference use
    in_channels: int = 1  # 1: grayscale, as FER data is
    mean: tuple[float, ...] = (0.5,)  # per-channel normalisation of values in 0..1
    std: tuple[float, ...] = (0.5,)
    description: str = ""  # one line, from the builder's docstring
    rgb_mean: tuple[float, ...] | None = None  # normalisation when built with in_channels=3
    rgb_std: tuple[float, ...] | None = None

    def normalisation(self, in_channels: int | None = None) -> tuple[tuple, tuple]:
        """(mean, std) for `in_channels` (default: the spec's), one value per channel."""
        c = self.in_channels if in_channels is None else in_channels
        if c == self.in_channels:
            return self.mean, self.std
        if c == 3 and self.rgb_mean is not None and self.rgb_std is not None:
            return self.rgb_mean, self.rgb_std
        return (self.mean[0],) * c, (self.std[0],) * c


_REGISTRY: dict[str, tuple[Callable[..., nn.Module], ModelSpec]] = {}


def register_model(
    *,
    input_size: tuple[int, int] = (48, 48),
    in_channels: int = 1,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.5,),
    rgb_mean: Sequence[float] | None = None,
    rgb_std: Sequence[float] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under its function name, with its default input spec.

    The builder takes keyword arguments only, at least `num_classes` and `in_channels`; if it
    takes `pretrained` it handles it itself, otherwise `create_model` loads a local state dict
    for it. The first line of its docstring is the model's description. The model it builds
    has `get_classifier()` (its head, for freezing and per-part learning rates).

    Raises:
        TypeError: a builder `create_model` could not call (the message says which parameter);
            `create_model` refuses a model without `get_classifier()` with a ConfigError.
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _check_builder(name, fn)
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        spec = ModelSpec(
            name=name,
            input_size=(int(input_size[0]), int(input_size[1])),
            in_channels=in_channels,
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            description=doc[0] if doc else "",
            rgb_mean=None if rgb_mean is None else tuple(rgb_mean),
            rgb_std=None if rgb_std is None else tuple(rgb_std),
        )
        _REGISTRY[name] = (fn, spec)
        return fn

    return wrap


def _check_builder(name: str, fn: Callable[..., nn.Module]) -> None:
    """Refuse a builder that `create_model` could not call the way it calls every builder."""
    params = inspect.signature(fn).parameters
    problems = [f"no {p!r} parameter" for p in _CALLED_WITH if p not in params]
    for p in params.values():
        if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
            problems.append(f"parameter {p.name!r} is positional-only")
        elif p.kind is not p.VAR_KEYWORD and p.default is p.empty and p.name not in _CALLED_WITH:
            problems.append(f"parameter {p.name!r} has no default")
    if problems:
        raise TypeError(
            f"model builder {name!r} cannot be registered: {'; '.join(problems)} (a builder "
            "takes keyword arguments only, at least num_classes and in_channels, the others "
            "with defaults)"
        )


def _check_model(name: str, model: nn.Module) -> None:
    """Refuse a built model without the head interface training and freezing rely on."""
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model {name!r}: its builder returned a {type(model).__name__}, not an nn.Module"
        )
    head = getattr(model, "get_classifier", None)
    if not callable(head):
        raise ConfigError(
            f"model {name!r} has no get_classifier() method; add one returning its classifier "
            "layer (training gives the head its own learning rate through it)"
        )
    classifier = head()
    if not any(classifier is m for m in model.modules()):
        raise ConfigError(
            f"model {name!r}: get_classifier() must return one of the model's own modules "
            f"(its classifier layer), got {type(classifier).__name__}"
        )


# Families built on torchvision's models, imported when first needed: importing torchvision
# takes over a second (it imports every torchvision model family), which inference with
# the other families never needs.
TORCHVISION_FAMILIES = ("ferkit.models.efficientnet", "ferkit.models.resnet")


def _ensure_registered(everything: bool = False) -> None:
    # The family modules register themselves on import; importing the package does it for
    # all but TORCHVISION_FAMILIES, but `from ferkit.models.registry import create_model`
    # alone must work too.
    import ferkit.models  # noqa: F401

    if everything:
        for module in TORCHVISION_FAMILIES:
            importlib.import_module(module)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _ensure_registered(everything=True)
    return sorted(_REGISTRY)


def _lookup(name: str) -> tuple[Callable[..., nn.Module], ModelSpec]:
    _ensure_registered()
    if name not in _REGISTRY:
        _ensure_registered(everything=True)
    if name not in _REGISTRY:
        raise ConfigError(unknown("model", name, sorted(_REGISTRY)))
    return _REGISTRY[name]


def get_model_spec(name: str) -> ModelSpec:
    """Default input size, channels, normalisation and description of model `name`.

    Raises:
        ConfigError: `name` is not registered (the message lists the valid names).
    """
    return _lookup(name)[1]


def _check_kwargs(name: str, fn: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [p for p in params if p not in ("num_classes", "in_channels", "pretrained")]
    for key in kwargs:
        if key not in params:
            # YAML reads {widths:3} as the key "widths:3" with no value
            hint = " (YAML needs a space after the colon: {a: 1})" if ":" in key else ""
            raise ConfigError(f"model {name!r}: {unknown('option', key, valid)}{hint}")


def _primitive(value: Any, where: str) -> Any:
    """`value` as primitives a checkpoint can hold (tuples become lists)."""
    if isinstance(value, _PRIMITIVES):
        # subclasses (torch.__version__ is a str subclass) would pickle as their own class,
        # which a weights_only load refuses: store the plain type
        return (
            value if value is None else next(t for t in _PRIMITIVES if isinstance(value, t))(value)
        )
    if isinstance(value, list | tuple):
        return [_primitive(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _primitive(v, where) for k, v in value.items()}
    raise ConfigError(
        f"{where} = {value!r} is a {type(value).__name__}; model options must be numbers, "
        "strings, booleans, or lists/dicts of them, so that a checkpoint can rebuild the model"
    )


def create_model(
    name: str,
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    pretrained: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build registered model `name`.

    Args:
        name: one of `list_models()`.
        num_classes: size of the output (logits).
        in_channels: 1 for grayscale input, or 3 (the gray face repeated, as RGB models take).
        pretrained: None (random initialisation); "imagenet" for the transfer models
            (torchvision downloads the weights); or the path of a local state dict: for the
            transfer models a torchvision one, for the others one of the same architecture.
        **kwargs: the model's own options; None values are dropped so that an unset CLI
            option means "the model's default".

    Returns:
        The model (in training mode), taking normalised float (N, in_channels, H, W) and
        returning logits (N, num_classes), with `ferkit_arch` and `ferkit_kwargs` set.

    Raises:
        ConfigError: unknown name or option, or an option value that is not valid.
        CheckpointError: `pretrained` names a file that does not fit the model.
    """
    fn, _ = _lookup(name)
    _check_kwargs(name, fn, kwargs)  # names first: an unknown one is refused even unset
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels!r}")
    arch_kwargs = {
        "num_classes": num_classes,
        "in_channels": in_channels,
        **{k: _primitive(v, f"{name} option {k!r}") for k, v in kwargs.items()},
    }
    own_weights = _takes_pretrained(fn)
    extra = {"pretrained": pretrained} if own_weights else {}
    try:
        model = fn(num_classes=num_classes, in_channels=in_channels, **extra, **kwargs)
    except (TypeError, ValueError) as exc:  # e.g. widths and depths of different lengths
        raise ConfigError(f"model {name!r}: options {kwargs} are not valid: {exc}") from exc
    _check_model(name, model)
    if pretrained is not None and not own_weights:
        _load_own_weights(name, model, pretrained)
    model.ferkit_arch = name
    # `pretrained` is left out: it says where the weights started, not what the architecture
    # is, and a checkpoint holds the weights themselves (the file or download it names need
    # not exist where the checkpoint is loaded).
    model.ferkit_kwargs = arch_kwargs
    return model


def _load_own_weights(name: str, model: nn.Module, pretrained: str | Path) -> None:
    if str(pretrained).lower() == "imagenet":
        with_weights = [n for n, (f, _) in sorted(_REGISTRY.items()) if _takes_pretrained(f)]
        raise ConfigError(
            f"model {name!r} has no ImageNet weights (it is trained from scratch); models that "
            f"have them: {', '.join(with_weights)}"
        )
    state_dict = with_new_head(model, read_state_dict(pretrained), source=str(pretrained))
    load_weights(model, state_dict, arch=name, source=str(pretrained))


def _takes_pretrained(fn: Callable[..., nn.Module]) -> bool:
    return "pretrained" in inspect.signature(fn).parameters
