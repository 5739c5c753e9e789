"""Building a :class:`~simclr.config.Config`: defaults < YAML file < ``--set`` overrides < named options.

Every key and value is checked: unknown keys, wrong types and out-of-range values raise ``InputError`` with
one clear line. The resolved config is saved as ``config.yaml`` in the run folder and inside every checkpoint
(as a plain dict, so checkpoints load with ``weights_only``)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from simclr.config import Config
from simclr.data.augment_spec import PRESETS, AugmentSpec
from simclr.errors import InputError
from simclr.files import atomic_write_text

_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


class _Loader(yaml.SafeLoader):
    """YAML with only true and false as booleans (YAML 1.2): 1.1's on/off/yes/no stay words, so that
    ``train.compile: off`` means the word off; a key given twice in one mapping is an error (YAML says keys
    are unique; PyYAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys: PyYAML's own error
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", None)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
                                   for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


_WORDS = {"yes": True, "on": True, "no": False, "off": False}


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert YAML-friendly forms (lists -> tuples)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, key)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(tp), key)
    scalar = _SCALARS.get(tp)
    if scalar is None:
        raise TypeError(f"unsupported config annotation {tp!r} for {key}")
    return scalar(value, key)


def _coerce_union(value: Any, tp: Any, key: str) -> Any:
    """``X | None`` (``auto``, ``null`` and ``none`` are None) or a union of types: the first that fits."""
    args = typing.get_args(tp)
    if type(None) in args and (value is None or (isinstance(value, str)
                                                 and value.lower() in ("auto", "null", "none"))):
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg, key)
        except InputError:
            continue
    raise InputError(f"config key {key}: {value!r} is not a valid {tp}")


def _coerce_tuple(value: Any, args: tuple[Any, ...], key: str) -> tuple[Any, ...]:
    """``tuple[X, ...]`` (a list of any length) or a fixed-length tuple; a string is a comma list."""
    if isinstance(value, str):  # --set augment.ops=crop,color or augment.crop_scale=0.2,1.0
        value = [_load_yaml(v) for v in value.split(",") if v.strip()]
    if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list of any length
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config key {key}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if not isinstance(value, (list, tuple)) or len(value) != len(args):
        raise InputError(f"config key {key}: expected a list of {len(args)} numbers, got {value!r}")
    return tuple(_coerce(v, a, key) for v, a in zip(value, args))


def _coerce_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _WORDS:  # YAML 1.1's words for true and false
        return _WORDS[value.lower()]
    raise InputError(f"config key {key}: expected true or false, got {value!r}")


def _coerce_int(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InputError(f"config key {key}: expected an integer, got {value!r}")


def _coerce_float(value: Any, key: str) -> float:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        number = float(value)  # YAML 1.1 reads 1e-6 (no dot) as a string
    if number is None:
        raise InputError(f"config key {key}: expected a number, got {value!r}")
    if not math.isfinite(number):
        raise InputError(f"config key {key}: expected a finite number, got {value!r}")
    return number


def _coerce_str(value: Any, key: str) -> str:
    if isinstance(value, bool):  # YAML reads true/false; in_memory accepts them as strings
        return "true" if value else "false"
    if (key.endswith("in_memory") and isinstance(value, str)
            and value.lower() in _WORDS):  # its true and false
        return "true" if _WORDS[value.lower()] else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InputError(f"config key {key}: expected a string, got {value!r}")


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _coerce_bool, int: _coerce_int, float: _coerce_float, str: _coerce_str}


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f" in section {prefix.rstrip('.')}" if prefix else ""
        raise InputError(f"unknown config key {prefix}{unknown[0]}{where}; "
                         f"valid keys: {', '.join(sorted(names))}")
    if cls is AugmentSpec and "size" in raw:
        raise InputError("config key augment.size: the view size is data.image_size; set that instead")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise InputError(f"config key {prefix}{name} must be a section (a mapping), got {value!r}")
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _expand_presets(raw: dict[str, Any]) -> dict[str, Any]:
    """``augment.preset: cifar10`` stands for that preset's values; explicit augment keys win."""
    augment = raw.get("augment")
    if not isinstance(augment, dict) or "preset" not in augment:
        return raw
    augment = dict(augment)
    name = augment.pop("preset")
    if not isinstance(name, str) or name not in PRESETS:
        raise InputError(f"unknown augment.preset {name!r}; choose from {', '.join(PRESETS)}")
    preset = {k: v for k, v in PRESETS[name].items() if k != "size"}  # the view size is data.image_size
    return {**raw, "augment": {**preset, **augment}}


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"head": {"out_dim": 128}}}`` as ``{"model.head.out_dim": 128}`` (dotted keys, as
    ``--set``).
    """
    out: dict[str, Any] = {}
    for key, value in nested.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict)
                   else {f"{prefix}{key}": value})
    return out


def unflatten(key: str, value: Any) -> dict[str, Any]:
    """``("optim.base_lr", 0.5)`` as ``{"optim": {"base_lr": 0.5}}``: one ``--set`` as a config layer."""
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise InputError(f"a config key such as optim.base_lr is needed, got {key!r}")
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.base_lr=0.5"`` -> ``{"optim": {"base_lr": 0.5}}`` (the value is read as YAML)."""
    if "=" not in text:
        raise InputError(f"--set expects KEY=VALUE (e.g. optim.base_lr=0.5), got {text!r}")
    key, _, value_text = text.partition("=")
    if not any(key.split(".")):
        raise InputError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        value = _load_yaml(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        value = value_text
    return unflatten(key, value)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is an ``InputError``."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"config file {p} is a folder: name a YAML file (e.g. configs/cifar10_cpu.yaml)")
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    try:
        raw = _load_yaml(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"config file {p} is not valid YAML: {first}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"config file {p} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def build_config(*layers: dict[str, Any]) -> Config:
    """Merge the layers (later wins) over the defaults, check every key and value, and validate."""
    raw: dict[str, Any] = {}
    for layer in layers:
        expanded = _expand_presets(layer)
        _build(Config, expanded, "")  # each layer's keys and values, before a later layer can hide them
        raw = _merge(raw, expanded)
    config = _build(Config, raw, "")
    try:
        config.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return config


def load_config(source: str | Path | Config | None = None, overrides: Sequence[str] = (),
                *extra: dict[str, Any]) -> Config:
    """Defaults < ``source`` (a YAML file, or a :class:`Config`) < ``--set`` overrides < each of ``extra`` in
    order (nested dicts: the named CLI options, Python's settings)."""
    layers = [config_to_dict(source) if isinstance(source, Config) else read_yaml(source)] if source else []
    layers += [parse_override(o) for o in overrides]
    return build_config(*layers, *extra)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) for YAML and for checkpoints loaded with weights_only."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    raw = plain(dataclasses.asdict(config))
    del raw["augment"]["size"]  # set from data.image_size
    return raw


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Inverse of ``config_to_dict``."""
    return build_config(raw)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def data_spec(data: str) -> str:
    """``--data`` as a run's config keeps it: an existing folder or file as its absolute path (so that
    ``--resume`` and the saved config work from any directory), a dataset's name (``cifar10``, ``digits``:
    read by name even where a folder of that name lies in the working directory) or a URL as given."""
    from simclr.data.named_sets import read_by_name

    path = os.path.expanduser(data)
    if read_by_name(data) or not os.path.exists(path):
        return data
    return os.path.abspath(path)
