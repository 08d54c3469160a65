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
    if dataclasses.is_dataclass(kind):
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
        for arg in args:
            if arg is type(None):
                continue
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
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind in (int, str, bool) and not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys raise :class:`ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(names)}")
    values = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**values)


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read YAML ``path`` into dataclass ``cls``."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    return from_dict(cls, data, where=str(path))


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)
