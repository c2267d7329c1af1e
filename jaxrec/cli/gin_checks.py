"""Gin configuration that fails loud: overrides must bind something; errors are one line.

`check_overrides` runs after gin has parsed the files and bindings and before any work: a
command-line macro override (`--gin.TRAIN_STEPZ=3`) that no configuration refers to would
otherwise be ignored. gin itself rejects unknown configurables and parameters while parsing;
`explain_gin_error` turns those (multi-line) errors into one line with the closest valid names.
gin does not check types: `check_bound_types` (the bound values, before construction) and
`check_field_types` (the constructed dataclass) name a field whose value has the wrong type.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import re
import sys
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from gin import config as gin_config
from jaxrec.data.dataset import DataError


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def binding_key(binding: str) -> str:
    """`KEY = VALUE` -> `KEY`."""
    return binding.split("=", 1)[0].strip()


def referenced_macros() -> set[str]:
    """Names of the macros some parsed binding refers to (`%NAME`)."""
    return {
        ref.scoped_selector.rsplit("/", 1)[0]
        for ref in gin_config.iterate_references(gin_config._CONFIG)
        if ref.selector == "gin.macro"
    }


def check_overrides(bindings: Sequence[str]) -> None:
    """DataError for an override macro that no configuration refers to (after parsing)."""
    used = referenced_macros()
    for binding in bindings:
        key = binding_key(binding)
        if "." in key or "/" in key or key in used:
            continue  # configurable.parameter bindings are checked by gin while parsing
        raise DataError(
            f"gin override {key!r} binds nothing: no configuration refers to %{key}"
            + _did_you_mean(key, used)
        )


def _registered_names() -> set[str]:
    names = set()
    for selector, _ in gin_config._REGISTRY.items():
        parts = selector.split(".")
        if not selector.startswith("__main__."):
            names.update(".".join(parts[k:]) for k in range(len(parts)))
    return names


def _parameters(name: str) -> list[str]:
    configurable = gin_config._REGISTRY.get_match(name)
    if configurable is None:
        return []
    fn = configurable.wrapped
    try:
        return list(inspect.signature(fn.__init__ if inspect.isclass(fn) else fn).parameters)
    except (TypeError, ValueError):
        return []


def explain_gin_error(error: Exception) -> str:
    """One line for a gin parsing error: the problem, the binding, the closest valid names."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    first = lines[0] if lines else type(error).__name__
    where = ""
    for k, ln in enumerate(lines[1:], start=1):
        if ln.startswith("In ") and k + 1 < len(lines):
            where = f" ({ln[3:]}: {lines[k + 1]})"
            break
    hint = ""
    m = re.match(r"No configurable matching '([^']+)'", first)
    if m:
        hint = _did_you_mean(m.group(1), _registered_names())
    m = re.match(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", first)
    if m:
        hint = _did_you_mean(m.group(2), _parameters(m.group(1)))
    return f"gin: {first.rstrip('.')}{hint}{where}"


# -- field types -------------------------------------------------------------------------------
_SCALARS = (int, float, bool, str)


def _type_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (strings under `from __future__ import annotations`);
    a field whose annotation does not resolve is left out (not checked)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # one unresolvable name must not hide the other fields
        pass
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        namespace = vars(sys.modules.get(klass.__module__, typing))
        for name, ann in vars(klass).get("__annotations__", {}).items():
            try:
                hints[name] = eval(ann, dict(namespace)) if isinstance(ann, str) else ann
            except Exception:
                hints.pop(name, None)
    return hints


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _checkable(tp: Any) -> bool:
    """int, float, bool, str, None, a dataclass, `X | None` and `tuple[...]` of those (the
    elements of a tuple may also be anything else, which is then not checked)."""
    if tp in _SCALARS or tp is type(None) or tp is tuple:
        return True
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return True
    if _is_union(tp):
        return all(_checkable(a) for a in typing.get_args(tp))
    return typing.get_origin(tp) is tuple


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"tuple[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is Any:
        return "Any"
    return getattr(tp, "__name__", repr(tp))


def _matches(value: Any, tp: Any) -> bool:
    """Whether `value` has type `tp`; annotations that are not `_checkable` accept anything."""
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is type(None):
        return value is None
    if tp is tuple:
        return isinstance(value, tuple)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    if _is_union(tp):
        return not _checkable(tp) or any(_matches(value, a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, tuple):
            return False
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        if args == ((),):  # tuple[()]
            return value == ()
        if len(value) != len(args):
            return False
        return all(_matches(v, a) for v, a in zip(value, args, strict=True))
    return True  # Any, dict, callables, other classes: not checked


def _check_value(where: str, cls: type, name: str, tp: Any, value: Any, shown: Any = None) -> None:
    if not _checkable(tp):
        return
    if not _matches(value, tp):
        shown = value if shown is None else shown
        raise DataError(f"{where}: {cls.__name__}.{name} must be {_type_name(tp)}, got {shown!r}")
    if dataclasses.is_dataclass(tp) and isinstance(value, tp):
        check_field_types(value, where)


def check_field_types(obj: Any, where: str) -> None:
    """DataError for a field of dataclass instance `obj` whose value does not have its annotated
    type (int, float, bool, str, `X | None`, `tuple[...]` of those, a nested dataclass, checked
    recursively). An int is a float, a bool is not an int; other annotations are not checked."""
    cls = type(obj)
    hints = _type_hints(cls)
    for field in dataclasses.fields(obj):
        if field.name in hints:
            _check_value(where, cls, field.name, hints[field.name], getattr(obj, field.name))


def _as_tuples(value: Any) -> Any:
    """gin's literals as a dataclass stores them: lists as tuples, dicts as (key, value) pairs."""
    if isinstance(value, dict):
        value = list(value.items())
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


def check_bound_types(cls: type, where: str, selector: str | None = None) -> None:
    """`check_field_types` on the values gin binds to dataclass `cls` (registered as `selector`,
    default its class name), before it is constructed: its `__post_init__` may fail obscurely
    on a wrong type, or convert it (a string to a tuple of characters). gin's lists and dicts
    count as tuples; references and macros are left to `check_field_types`."""
    hints = _type_hints(cls)
    bound = gin_config.get_bindings(selector or cls.__name__, resolve_references=False)
    for name, value in bound.items():
        if name not in hints or isinstance(value, gin_config.ConfigurableReference):
            continue
        if not dataclasses.is_dataclass(hints[name]):  # a bound dataclass is a reference
            _check_value(where, cls, name, hints[name], _as_tuples(value), shown=value)


# -- t5x's flag spellings --------------------------------------------------------------------
_REFERENCE_STARTS = tuple("([{@%")


def _gin_value(value: str) -> str:
    """Quotes bare words/paths so `--gin.MODEL_DIR=/tmp/x` works; keeps literals and refs."""
    if value.startswith(_REFERENCE_STARTS):
        return value
    try:
        ast.literal_eval(value)  # numbers, quoted strings, True/False/None
        return value
    except (ValueError, SyntaxError):
        return repr(value)


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
    """`--gin.KEY=VALUE` → `--gin_bindings=KEY = VALUE` (t5x's shorthand); `--gin-file` etc.
    → `--gin_file` (flags keep t5x's underscore spelling; dashes are accepted as an alias)."""
    out = []
    for arg in argv:
        if arg.startswith("--gin.") and "=" in arg:
            key, value = arg[len("--gin.") :].split("=", 1)
            out.append(f"--gin_bindings={key} = {_gin_value(value)}")
        elif arg.startswith("--") and "-" in arg[2:].partition("=")[0]:
            name, eq, value = arg[2:].partition("=")  # --gin-file: alias of t5x's --gin_file
            out.append("--" + name.replace("-", "_") + eq + value)
        else:
            out.append(arg)
    return out
