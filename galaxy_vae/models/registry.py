"""The model registry: a name -> class map that checkpoints rebuild models from. A model joins it
by one decorator, ``@register(name, Config)``, in its own module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields

from torch import nn

MODELS: dict[str, type] = {}  # registry name -> model class (each with its config class as .Config)


def register(name: str, config: type) -> Callable[[type], type]:
    """Class decorator: add a model to the registry under ``name``, built from dataclass ``config``."""
    def add(cls: type) -> type:
        cls.registry_name, cls.Config = name, config
        MODELS[name] = cls
        return cls
    return add


def model_name(model: nn.Module) -> str:
    """The registry name of ``model`` (the key a checkpoint stores)."""
    name = getattr(type(model), "registry_name", None)
    if MODELS.get(name) is not type(model):
        raise KeyError(f"{type(model).__name__} is not in the model registry")
    return name


def make_config(name: str, config: dict | None = None):
    """The dataclass config of model ``name`` from a plain dict (e.g. JSON); unknown keys refused."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    cls = MODELS[name].Config
    config = dict(config or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise KeyError(f"{name} config has no field(s) {unknown}; known: {sorted(known)}")
    # JSON turns tuples into lists; the dataclasses declare tuples.
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def build_model(name: str, config: dict | None = None) -> nn.Module:
    """A freshly initialised model ``name`` ("dense_ae", "conv_vae", "galaxy_vae") from a config dict."""
    config = make_config(name, config)  # checks the name and fields first
    return MODELS[name](config)


def config_dict(model: nn.Module) -> dict:
    """The model's config as a JSON-ready dict (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.config).items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
