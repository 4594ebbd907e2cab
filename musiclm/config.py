"""Dataclass configs <-> YAML, with validation and named presets.

Every model's config is a (nested) dataclass. :func:`from_dict` checks it strictly: unknown keys and
values of the wrong type are errors that name the dotted key (``optimizer.lr``). Each model registers
its presets (``small``, the default, and ``paper``) with :func:`register_preset`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from musiclm.errors import ConfigError
from musiclm.fileio import atomic_write_text

T = TypeVar("T")

_PRESETS: dict[str, dict[str, Callable[[], Any]]] = {}
DEFAULT_PRESET = "small"
PRESET_MODULES = [
    "musiclm.train.config",
    "musiclm.codec.config",
    "musiclm.mulan.config",
    "musiclm.semantic.config",
    "musiclm.lm.stage_config",
    "musiclm.eval.tagger_recipe",
    "musiclm.melody.config",
]
"""Modules whose import registers presets (one per model package); missing ones are skipped."""


def _load_preset_modules() -> None:
    import importlib

    for name in PRESET_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)):
                raise


def register_preset(model: str, name: str) -> Callable[[Callable[[], T]], Callable[[], T]]:
    """Decorator registering a zero-argument factory as preset ``name`` of ``model``."""

    def decorate(factory: Callable[[], T]) -> Callable[[], T]:
        _PRESETS.setdefault(model, {})[name] = factory
        return factory

    return decorate


def preset(model: str, name: str = DEFAULT_PRESET) -> Any:
    """A fresh config object of ``model``'s preset ``name``."""
    _load_preset_modules()
    if model not in _PRESETS:
        raise ConfigError(f"no presets for model {model!r}; known: {', '.join(sorted(_PRESETS)) or 'none'}")
    if name not in _PRESETS[model]:
        known = ", ".join(sorted(_PRESETS[model]))
        raise ConfigError(f"model {model!r} has no preset {name!r}; known: {known}")
    return _PRESETS[model][name]()


def presets(model: str | None = None) -> dict[str, list[str]]:
    """Registered preset names, per model."""
    _load_preset_modules()
    names = {m: sorted(p) for m, p in _PRESETS.items()}
    return names if model is None else {model: names.get(model, [])}


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict (YAML-ready: tuples become lists) of a dataclass config."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrongly typed values.

    Missing keys take the dataclass defaults; missing keys without a default are errors.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = _join(path, unknown[0])
        raise ConfigError(f"{where}: unknown key (known keys: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or cls.__name__}: {exc}") from exc
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{path + ': ' if path else ''}{exc}") from None
    return obj


def merge(config: T, overrides: dict[str, Any]) -> T:
    """A copy of ``config`` with ``overrides`` (nested dict or dotted keys) applied and re-validated."""
    data = to_dict(config)
    for key, value in overrides.items():
        target = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                raise ConfigError(f"{key}: unknown key")
            target = target[part]
        if isinstance(value, dict) and isinstance(target.get(parts[-1]), dict):
            target[parts[-1]] = {**target[parts[-1]], **value}
        else:
            target[parts[-1]] = value
    return from_dict(type(config), data)


_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse CLI overrides ``key.sub=value`` (values are YAML scalars/lists)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads "8e-4" as a string
        out[key.strip()] = value
    return out


def load_yaml(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Read a YAML file into dataclass ``cls`` (errors name the file and the key)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_yaml(config: Any, path: str | os.PathLike[str]) -> Path:
    """Write a dataclass config as YAML, atomically."""
    return atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            with contextlib.suppress(ConfigError):
                return _coerce(arg, value, key)
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path=key)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
