"""Resolve and validate a workload's parameters: dataclass defaults < preset < explicit values.

Validation is driven by the workload's `Params` dataclass (types plus `choices`/`min`/`max`
metadata), so every error can name the key and the accepted values before anything runs.
Floats must be finite unless a field's metadata says `allow_nonfinite: True`; integers without a
`max` are capped at `INT_MAX` (2^53: larger counts are not exact as floats and no run lasts that long).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Literal, Mapping

from jobkit.protocol import BaseParams

INT_MAX = 2**53


class ParamError(ValueError):
    """A bad parameter value: `key` names it, the message says what is accepted."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return `value` as type `tp`, or raise ParamError. Ints are accepted for floats, not bools."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ParamError:
                continue
        raise ParamError(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ParamError(key, f"got {value!r}; accepted values: {', '.join(map(str, allowed))}")
        return value
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ParamError(key, f"expected {_type_name(tp)}, got {value!r}")
        return [_coerce(key, v, inner) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, tp):
        return value
    raise ParamError(key, f"expected {_type_name(tp)}, got {value!r}")


def _check_bounds(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    if isinstance(value, list):
        for item in value:
            _check_bounds(key, item, meta)
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ParamError(key, f"got {value!r}; accepted values: {', '.join(map(str, choices))}")
    if isinstance(value, float) and not math.isfinite(value) and not meta.get("allow_nonfinite"):
        raise ParamError(key, f"got {value!r}; must be a finite number")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = meta.get("min"), meta.get("max")
        if hi is None and isinstance(value, int):
            hi = INT_MAX
        if lo is not None and value < lo:
            raise ParamError(key, f"got {value!r}; must be >= {lo}")
        if hi is not None and value > hi:
            raise ParamError(key, f"got {value!r}; must be <= {hi}")


@functools.lru_cache(maxsize=None)
def fields_of(params_cls: type[BaseParams]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(params_cls)}


@functools.lru_cache(maxsize=None)
def hints_of(params_cls: type[BaseParams]) -> dict[str, Any]:
    """Resolved field types, once per class (a 1000-run sweep resolves the same class 1000 times)."""
    return typing.get_type_hints(params_cls)


def resolve(params_cls: type[BaseParams], presets: Mapping[str, Mapping[str, Any]],
            raw: Mapping[str, Any]) -> BaseParams:
    """Build a validated `params_cls` from `raw` (a sweep run's workload keys).

    Order: dataclass defaults, then the preset named by `raw['preset']` (or the default), then
    `raw` itself. Raises ParamError naming the first bad key.
    """
    fields = fields_of(params_cls)
    hints = hints_of(params_cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamError(unknown[0], f"unknown parameter; accepted keys: {', '.join(sorted(fields))}")
    preset_name = raw.get("preset", fields["preset"].default)
    if preset_name not in presets:
        raise ParamError("preset", f"got {preset_name!r}; accepted values: {', '.join(presets)}")
    values: dict[str, Any] = {}
    for source in (presets[preset_name], raw):
        for key, value in source.items():
            values[key] = _coerce(key, value, hints[key])
    values["preset"] = preset_name
    for key, value in values.items():
        _check_bounds(key, value, fields[key].metadata)
    params = params_cls(**values)
    check(params)
    return params


def check(params: BaseParams) -> None:
    """The workload's own cross-field checks, then the common ones (stop / patience / min_delta)."""
    params.check()
    check_stop_params(params)


def to_dict(params: BaseParams) -> dict[str, Any]:
    """JSON-ready dict of every resolved parameter (what goes into spec.json)."""
    return dataclasses.asdict(params)


def identity_dict(params: BaseParams) -> dict[str, Any]:
    """`to_dict` without the keys a workload added later that still have their default.

    A field whose metadata says `"identity": "when-set"` joins the run's identity (its id hash) only
    when set to something else than its default: adding such a key to a workload keeps the ids of the
    runs made before it, so resubmitting their sweep resumes them instead of starting over.
    """
    values = to_dict(params)
    for name, f in fields_of(type(params)).items():
        if f.metadata.get("identity") == "when-set" and values.get(name) == f.default:
            del values[name]
    return values


def from_dict(params_cls: type[BaseParams], data: Mapping[str, Any]) -> BaseParams:
    """Rebuild resolved params from spec.json, checked again against this code's `Params`.

    A key this code does not know (spec.json written by another version of the workload) is an
    error rather than silently dropped: the run would otherwise train something else than asked.
    """
    fields = fields_of(params_cls)
    hints = hints_of(params_cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamError(unknown[0], "in spec.json but unknown to this version of the workload "
                                     f"(accepted keys: {', '.join(sorted(fields))}); resubmit the run with this code")
    values = {k: _coerce(k, v, hints[k]) for k, v in data.items()}
    for key, value in values.items():
        _check_bounds(key, value, fields[key].metadata)
    return params_cls(**values)


def check_values(params_cls: type[BaseParams], values: Mapping[str, Any]) -> dict[str, Any]:
    """Type- and bound-check some of a workload's keys (e.g. settings from `resume --set`)."""
    fields = fields_of(params_cls)
    hints = hints_of(params_cls)
    out = {}
    for key, value in values.items():
        if key not in fields:
            raise ParamError(key, f"unknown key; accepted keys: {', '.join(sorted(fields))}")
        out[key] = _coerce(key, value, hints[key])
        _check_bounds(key, out[key], fields[key].metadata)
    return out


def check_stop_params(params: Any) -> None:
    """Cross-field checks of the common `stop`/`patience`/`min_delta` keys (ParamError on bad input).

    They belong to the params (plan), not to the plateau stop that uses them (run), so that planning
    never imports what runs inside a job."""
    if getattr(params, "stop", "steps") != "plateau":
        return
    if not params.eval_every:
        raise ParamError("eval_every", "got 0; stop = 'plateau' decides on evaluations, "
                         "so set eval_every > 0 (e.g. eval_every = 250)")
    needed = (params.patience + 1) * params.eval_every
    if needed > params.steps:
        raise ParamError("patience", f"got {params.patience}; with eval_every={params.eval_every} a plateau "
                         f"needs {needed} steps but steps={params.steps}: lower patience or eval_every, "
                         "or raise steps (the upper bound)")
