"""Command-line options from typed requests: one option per dataclass field, with the field's
default and help (``metadata``), and the dataclass built back from the parsed options. No torch."""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints


def _unwrap(hint: Any) -> Any:
    """``X | None`` → X."""
    if get_origin(hint) in (Union, types.UnionType):
        return next(a for a in get_args(hint) if a is not type(None))
    return hint


def _comma_list(kind: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, got {text!r}"
            ) from None

    return parse


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (a clear error, not a traceback later)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low or (high is not None and v > high):
            within = f"{low}…{high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {within}, not {v}")
        return v

    return parse


def _default(f: Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def flag(name: str) -> str:
    """The command-line option of the field ``name``: ``route_content`` → ``--route-content``."""
    return "--" + name.replace("_", "-")


def add_options(p: Any, cls: type, skip: tuple[str, ...] = (), **defaults: Any) -> None:
    """One option per field of the dataclass ``cls``, with the field's default (or ``defaults``)
    and help; a field without a default is a positional argument; a nested dataclass's fields
    form a group of their own."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        kind = _unwrap(hints[f.name])
        if f.name in skip:
            continue
        if is_dataclass(kind):
            title = (kind.__doc__ or kind.__name__).splitlines()[0].rstrip(".")
            add_options(p.add_argument_group(title), kind, skip, **defaults)
            continue
        default = defaults.get(f.name, _default(f))
        text = f.metadata.get("help", "")
        kw: dict[str, Any] = {"help": text}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction if default else "store_true"
        elif get_origin(kind) is tuple:
            kw.update(type=_comma_list(get_args(kind)[0]), metavar="A,B,…")
        else:
            kw["type"] = kind
        if default is MISSING:
            p.add_argument(f.name, **kw)
            continue
        if not (default is None or default is False or default == "" or "default" in text):
            kw["help"] = f"{text} (default {_shown(default)})"
        p.add_argument(flag(f.name), dest=f.name, default=default, **kw)


def build(cls: type, a: argparse.Namespace) -> Any:
    """The dataclass ``cls`` from parsed options (fields without an option keep their default)."""
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        kind = _unwrap(hints[f.name])
        if is_dataclass(kind):
            values[f.name] = build(kind, a)
        elif hasattr(a, f.name):
            values[f.name] = getattr(a, f.name)
    return cls(**values)
