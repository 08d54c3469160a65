"""Typed configuration from YAML: dataclasses, unknown keys are errors, Literal choices checked."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from medseg.errors import ConfigError

T = TypeVar("T")


def _convert(value: Any, kind: Any, where: str) -> Any:
    origin = get_origin(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(kind, value, where)
    if origin is Literal:
        if value not in get_args(kind):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(kind))}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = get_args(kind)
        if value is None and type(None) in args:
            return None
        choices = [arg for arg in args if arg is not type(None)]
        if len(choices) == 1:  # an optional value: its own error says what was expected
            return _convert(value, choices[0], where)
        for arg in choices:
            try:
                return _convert(value, arg, where)
            except (ConfigError, TypeError, ValueError):
                continue
        raise ConfigError(f"{where}: {value!r} does not match {kind}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(kind)
        item = args[0] if args else Any
        converted = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if kind in (int, str, bool) and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config", base: T | None = None) -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys raise :class:`ConfigError`.

    Missing keys keep the values of ``base`` (default: the class defaults); a nested dataclass
    section starts from its field's default (e.g. ``N4Options.fast()``), not from its class's.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        kind, default = hints[key], _field_default(fields[key])
        if base is not None:
            default = getattr(base, key)
        if dataclasses.is_dataclass(kind) and isinstance(value, dict) and dataclasses.is_dataclass(default):
            values[key] = from_dict(typing.cast(type, kind), value, f"{where}.{key}", base=default)
        else:
            values[key] = _convert(value, kind, f"{where}.{key}")
    if base is not None:
        return typing.cast(T, dataclasses.replace(typing.cast(Any, base), **values))
    return cls(**values)


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read YAML ``path`` into dataclass ``cls``."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    return from_dict(cls, data, where=str(path))


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain dicts and lists (for JSON and YAML)."""
    return dataclasses.asdict(config)
