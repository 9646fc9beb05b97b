"""Optimizers as data: `to_config` / `from_config`, and YAML files.

A transformation built by a public factory carries a `Spec` (its name and every argument
of the call), so it converts to plain data without help from each factory::

    {"name": "adamw", "args": {"learning_rate": 0.001, "b1": 0.9, ...}}

Arguments that are themselves data are converted recursively: nested transformations
become the same kind of mapping, a `Schedule` becomes ``{"schedule": <class name>,
<field>: <value>, ...}``, a dtype its name (``"bfloat16"``), a tuple a list, a mapping a
mapping (escaped as ``{"mapping": {...}}`` only when its keys would be mistaken for a
transformation or a schedule), a label function from ``gx.by_path`` ``{"function": "by_path",
"args": {"patterns": {...}}}``, and a public function given as an argument (an optimizer
factory for ``gx.param_group``, a projection for ``gx.project_params``) by its name,
``{"callable": "adamw"}``. `from_config` reverses this, checking every key on the way:
a bad config raises `ConfigError` naming the key path (``optimizer.args.b1``), the bad
value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from gradxform._factory import REGISTRY
from gradxform.core import GradientTransformation, Schedule, is_transformation
from gradxform.schedules._util import public_function

Config = dict[str, Any]

_TRANSFORMATION_KEYS = {"name", "args"}
_SCHEDULE_KEY = "schedule"
_MAPPING_KEY = "mapping"
_FUNCTION_KEY = "function"
_CALLABLE_KEY = "callable"

# Functions whose results are callables that can be written as data: each such result has a
# ``__gradxform_config__`` attribute ``{"function": <name>, "args": {...}}``, and
# ``from_config`` calls the function (looked up here, never by arbitrary import) with those
# arguments.
CONFIG_FUNCTIONS: dict[str, str] = {"by_path": "gradxform.wrappers.paths"}

NOT_SERIALIZABLE = (
    "{path}: {what} cannot be written as a config. Only transformations built by gradxform's "
    "public factories (gx.adam, gx.chain, ...), schedules from gx.schedules, numbers, strings, "
    "booleans, None, dtypes, lists and mappings of these can. Build this part from public "
    "pieces, or give it a name with gx.transformation so that it is registered."
)


class ConfigError(ValueError):
    """A config (a mapping or a YAML file) that does not describe a valid optimizer.

    Attributes:
      path: the key path of the offending entry (``"optimizer.args.b1"``), or the file path
        for a file that cannot be read.
    """

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


# --------------------------------------------------------------------------- to_config


def to_config(tx: GradientTransformation, *, include_defaults: bool = True) -> Config:
    """Converts a transformation into plain data (numbers, strings, lists, mappings).

    Args:
      tx: a transformation built from gradxform's public factories, however nested.
      include_defaults: keep arguments that equal the factory's default (the default, so
        that a saved config does not change meaning if a default changes later).

    Returns:
      ``{"name": <factory name>, "args": {<argument>: <value>, ...}}``, with nested
      transformations, schedules and dtypes converted recursively; ready for `save_yaml`.

    Raises:
      ConfigError: if some part cannot be written as data (a hand-made or Optax
        transformation, a plain function used as a schedule or a mask), naming its path.

    Example:
      >>> import gradxform as gx
      >>> gx.to_config(gx.sgd(0.1, momentum=0.9), include_defaults=False)
      {'name': 'sgd', 'args': {'learning_rate': 0.1, 'momentum': 0.9}}
    """
    return _tx_to_config(tx, "<root>", include_defaults)


def _tx_to_config(tx: Any, path: str, include_defaults: bool) -> Config:
    spec = getattr(tx, "spec", None)
    if spec is None or spec.name not in REGISTRY:
        what = f"the transformation {type(tx).__module__}.{type(tx).__name__} (made by hand or by another library)"
        raise ConfigError("", NOT_SERIALIZABLE.format(path=path, what=what))
    params = inspect.signature(REGISTRY[spec.name]).parameters
    args = {}
    for key, value in spec.args.items():
        param = params.get(key)
        if not include_defaults and param is not None:
            variadic = param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
            if variadic and not value or param.default is not param.empty and _same(value, param.default):
                continue
        try:
            args[key] = _value_to_config(value, f"{path}.args.{key}" if path != "<root>" else f"args.{key}", include_defaults)
        except ConfigError:
            # A default that is code (a private function) is left out: the factory puts it back.
            if param is None or value is not param.default:
                raise
    return {"name": spec.name, "args": args}


def _same(value: Any, default: Any) -> bool:
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # arrays and exotic values: keep them
        return False


def _is_special(keys: set) -> bool:
    """Whether a mapping with these keys denotes something other than a plain mapping."""
    return (
        "name" in keys
        and keys <= _TRANSFORMATION_KEYS
        or _SCHEDULE_KEY in keys
        or _FUNCTION_KEY in keys
        and keys <= {_FUNCTION_KEY, "args"}
        or keys in ({_MAPPING_KEY}, {_CALLABLE_KEY})
    )


def _public_function(name: Any) -> Callable[..., Any] | None:
    """``gx.<name>`` if it is a function (a factory, a projection, ...), else None."""
    import gradxform

    value = getattr(gradxform, name, None) if isinstance(name, str) and not name.startswith("_") else None
    return value if inspect.isfunction(value) else None


def _public_function_name(value: Any) -> str | None:
    name = getattr(value, "__name__", None)
    return name if _public_function(name) is value else None


def _dtype_name(value: Any) -> str | None:
    if isinstance(value, np.dtype) or (hasattr(value, "dtype") and isinstance(value, type)):
        return jnp.dtype(value).name
    if isinstance(value, type) and issubclass(value, np.generic):
        return jnp.dtype(value).name
    if type(value).__name__ == "_ScalarMeta":  # jnp.float32 and friends
        return jnp.dtype(value).name
    return None


def _value_to_config(value: Any, path: str, include_defaults: bool) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (np.ndarray, jnp.ndarray)) and np.ndim(value) == 0:
        return np.asarray(value).item()
    if is_transformation(value):
        return _tx_to_config(value, path, include_defaults)
    name = _dtype_name(value)
    if name is not None:
        return name
    described = getattr(value, "__gradxform_config__", None)
    if callable(value) and isinstance(described, Mapping):
        return {k: _value_to_config(v, f"{path}.{k}", include_defaults) for k, v in described.items()}
    if callable(value) and _public_function_name(value) is not None:
        return {_CALLABLE_KEY: _public_function_name(value)}
    if isinstance(value, Schedule) and dataclasses.is_dataclass(value):
        out: Config = {_SCHEDULE_KEY: type(value).__name__}
        for field in dataclasses.fields(value):
            out[field.name] = _value_to_config(getattr(value, field.name), f"{path}.{field.name}", include_defaults)
        return out
    if isinstance(value, (tuple, list)):
        return [_value_to_config(v, f"{path}.{i}", include_defaults) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ConfigError("", NOT_SERIALIZABLE.format(path=f"{path}.{k!r}", what=f"the key {k!r}"))
            out[k] = _value_to_config(v, f"{path}.{k}", include_defaults)
        keys = set(out)
        if keys and _is_special(keys):
            return {_MAPPING_KEY: out}
        return out
    if callable(value):
        label = getattr(value, "__qualname__", type(value).__name__)
        raise ConfigError("", NOT_SERIALIZABLE.format(path=path, what=f"the function {label}"))
    raise ConfigError("", NOT_SERIALIZABLE.format(path=path, what=f"the {type(value).__name__} value {value!r}"))


# --------------------------------------------------------------------------- from_config


def from_config(config: Mapping[str, Any] | str | os.PathLike, *, path: str = "") -> GradientTransformation:
    """Builds the transformation a config describes (the inverse of `to_config`).

    Args:
      config: a mapping ``{"name": ..., "args": {...}}`` (``args`` may omit arguments that
        have defaults), or the path of a YAML file holding one (at its top level or under
        an ``optimizer`` key).
      path: the key path of ``config`` inside a larger document, used in error messages.

    Returns:
      The transformation, built by calling the public factories, so it is validated and
      produces the same updates as the one the config was made from.

    Raises:
      ConfigError: for a missing or unreadable file, an unknown transformation or schedule
        name (suggesting the closest ones), an unknown argument (listing the allowed ones),
        a missing required argument, or a value the factory rejects; the message names the
        key path and the bad value.

    Example:
      >>> import gradxform as gx
      >>> tx = gx.from_config({"name": "adam", "args": {"learning_rate": 0.001}})
      >>> tx.spec.name, tx.spec.args["b2"]
      ('adam', 0.999)
    """
    if isinstance(config, (str, os.PathLike)):
        document = load_yaml(config)
        if isinstance(document, Mapping) and "optimizer" in document:
            return _build_transformation(document["optimizer"], _join(path, "optimizer"))
        return _build_transformation(document, path)
    return _build_transformation(config, path)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _build_transformation(config: Any, path: str) -> GradientTransformation:
    if not isinstance(config, Mapping):
        raise ConfigError(
            path, f"expected a transformation {{name: ..., args: {{...}}}}, got {type(config).__name__} {config!r}."
        )
    unknown = set(config) - _TRANSFORMATION_KEYS
    if unknown:
        raise ConfigError(
            path, f"unknown key(s) {sorted(map(str, unknown))} in a transformation; allowed keys: name, args."
        )
    name = config.get("name")
    if not isinstance(name, str):
        raise ConfigError(_join(path, "name"), f"must be the name of a transformation (a string), got {name!r}.")
    factory = REGISTRY.get(name)
    if factory is None:
        raise ConfigError(
            _join(path, "name"),
            f"unknown transformation {name!r}.{_suggest(name, sorted(REGISTRY))} "
            f"({len(REGISTRY)} names are known: sorted(gradxform._factory.REGISTRY) lists them.)",
        )
    args = config.get("args") or {}
    args_path = _join(path, "args")
    if not isinstance(args, Mapping):
        raise ConfigError(args_path, f"must be a mapping of argument names to values, got {args!r}.")
    sig = inspect.signature(factory)
    params = sig.parameters
    allowed = [p for p in params if params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key in args:
        if key not in params and not accepts_any:
            raise ConfigError(
                _join(args_path, key),
                f"{name} has no argument {key!r}.{_suggest(str(key), allowed)} Allowed: {', '.join(allowed)}.",
            )
    missing = [
        p.name
        for p in params.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in args
    ]
    if missing:
        raise ConfigError(args_path, f"{name} needs the argument(s) {', '.join(missing)}, which are missing.")
    for param in params.values():
        if param.kind is param.VAR_POSITIONAL and not isinstance(args.get(param.name, []), (list, tuple)):
            raise ConfigError(
                _join(args_path, param.name),
                f"{name} takes {param.name} as a list, got {type(args[param.name]).__name__} {args[param.name]!r}.",
            )
    values = {key: _value_from_config(value, _join(args_path, key), key) for key, value in args.items()}
    call_args, call_kwargs = _call_arguments(sig, values)
    try:
        return factory(*call_args, **call_kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        culprit = next((k for k in args if re.search(rf"\b{re.escape(str(k))}\b", str(e))), None)
        raise ConfigError(_join(args_path, culprit) if culprit else path or name, str(e)) from None


def _call_arguments(sig: inspect.Signature, values: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``values`` (var-positional given as a list)."""
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for param in sig.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            positional.extend(values.get(param.name, ()))
        elif param.kind is param.VAR_KEYWORD:
            keywords.update(values.get(param.name, {}))
            keywords.update({k: v for k, v in values.items() if k not in sig.parameters})
        elif param.name in values:
            keywords[param.name] = values[param.name]
    return positional, keywords


def _schedule_types() -> dict[str, Callable[..., Any]]:
    """Schedule classes by name: every `Schedule` subclass, then ``gx.schedules``' table."""
    found: dict[str, Callable[..., Any]] = {}
    stack = list(Schedule.__subclasses__())
    while stack:
        cls = stack.pop()
        found.setdefault(cls.__name__, cls)
        stack.extend(cls.__subclasses__())
    try:
        from gradxform import schedules
    except ImportError:  # pragma: no cover - the package always has it
        return found
    found.update(getattr(schedules, "SCHEDULE_TYPES", {}))
    for name in getattr(schedules, "__all__", ()):
        factory = getattr(schedules, name, None)
        if name not in found and inspect.isfunction(factory):
            found[name] = factory
    return found


def _value_from_config(value: Any, path: str, key: Any) -> Any:
    if isinstance(value, Mapping):
        keys = set(value)
        if "name" in keys and keys <= _TRANSFORMATION_KEYS:
            return _build_transformation(value, path)
        if _SCHEDULE_KEY in keys:
            return _build_schedule(value, path)
        if _FUNCTION_KEY in keys and keys <= {_FUNCTION_KEY, "args"}:
            return _build_function(value, path)
        if keys == {_CALLABLE_KEY}:
            name = value[_CALLABLE_KEY]
            function = _public_function(name)
            if function is None:
                import gradxform

                known = sorted(n for n in dir(gradxform) if _public_function(n) is not None)
                raise ConfigError(
                    _join(path, _CALLABLE_KEY),
                    f"{name!r} is not a public gradxform function.{_suggest(str(name), known)}",
                )
            return function
        if keys == {_MAPPING_KEY}:
            value = value[_MAPPING_KEY]
        return {k: _value_from_config(v, _join(path, k), k) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_value_from_config(v, _join(path, i), i) for i, v in enumerate(value))
    if isinstance(value, str) and isinstance(key, str) and key.endswith("dtype"):
        try:
            return jnp.dtype(value)
        except TypeError:
            raise ConfigError(path, f"{value!r} is not a dtype name; use e.g. 'float32' or 'bfloat16'.") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"must be finite, got {value!r}.")
    return value


def _build_function(config: Mapping[str, Any], path: str) -> Any:
    import importlib

    name = config[_FUNCTION_KEY]
    if not isinstance(name, str) or name not in CONFIG_FUNCTIONS:
        raise ConfigError(
            _join(path, _FUNCTION_KEY),
            f"unknown function {name!r}.{_suggest(str(name), sorted(CONFIG_FUNCTIONS))} "
            f"Allowed: {', '.join(sorted(CONFIG_FUNCTIONS))}.",
        )
    function = getattr(importlib.import_module(CONFIG_FUNCTIONS[name]), name)
    args = config.get("args") or {}
    if not isinstance(args, Mapping):
        raise ConfigError(_join(path, "args"), f"must be a mapping of argument names to values, got {args!r}.")
    allowed = list(inspect.signature(function).parameters)
    for k in args:
        if k not in allowed:
            raise ConfigError(
                _join(path, f"args.{k}"), f"{name} has no argument {k!r}.{_suggest(str(k), allowed)} Allowed: {', '.join(allowed)}."
            )
    values = {k: _value_from_config(v, _join(path, f"args.{k}"), k) for k, v in args.items()}
    try:
        return function(**values)
    except (ValueError, TypeError) as e:
        raise ConfigError(path, str(e)) from None


def _build_schedule(config: Mapping[str, Any], path: str) -> Any:
    name = config[_SCHEDULE_KEY]
    types = _schedule_types()
    cls = types.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(
            _join(path, _SCHEDULE_KEY), f"unknown schedule {name!r}.{_suggest(str(name), sorted(types))}"
        )
    fields = {k: _value_from_config(v, _join(path, k), k) for k, v in config.items() if k != _SCHEDULE_KEY}
    if dataclasses.is_dataclass(cls):
        known = [f.name for f in dataclasses.fields(cls)]
    else:
        known = list(inspect.signature(cls).parameters)
    for k in fields:
        if k not in known:
            raise ConfigError(
                _join(path, k), f"schedule {name} has no field {k!r}.{_suggest(str(k), known)} Allowed: {', '.join(known)}."
            )
    try:
        return (public_function(cls) or cls)(**fields)
    except (ValueError, TypeError) as e:
        raise ConfigError(path, f"schedule {name}: {e}") from None


# --------------------------------------------------------------------------- YAML


def _yaml():
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - pyyaml is in the demo extra
        raise ImportError("YAML configs need PyYAML: pip install 'gradxform[demo]'.") from e
    return yaml


def _loader():
    yaml = _yaml()

    class Loader(yaml.SafeLoader):
        """SafeLoader that reads ``1e-3`` as a number, as people mean (YAML 1.1 wants ``1.0e-3``),
        and rejects a key given twice in one mapping (YAML would keep the last one silently)."""

        def construct_mapping(self, node, deep=False):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: SafeLoader reports it itself
                    continue
                if first != key_node.start_mark.line + 1:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"found duplicate key {key!r} (first on line {first}, again on line "
                        f"{key_node.start_mark.line + 1}); remove one of them",
                        key_node.start_mark,
                    )
            return super().construct_mapping(node, deep=deep)

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def load_yaml(path: str | os.PathLike) -> Any:
    """Reads a YAML file as plain data.

    Args:
      path: the file.

    Returns:
      Its contents (mappings, lists, numbers, strings). ``1e-3`` is read as a number.

    Raises:
      ConfigError: if the file does not exist (saying which absolute path was tried and
        listing the YAML files beside it), is not valid YAML (with the line), or gives a
        key twice in one mapping.

    Example:
      >>> import gradxform as gx, tempfile, os
      >>> f = os.path.join(tempfile.mkdtemp(), "opt.yaml")
      >>> gx.save_yaml({"name": "sgd", "args": {"learning_rate": 1e-3}}, f)
      >>> gx.load_yaml(f)["args"]["learning_rate"]
      0.001
    """
    file = Path(path)
    if not file.is_file():
        near = sorted(p.name for p in file.parent.glob("*.y*ml")) if file.parent.is_dir() else []
        hint = f" YAML files in {file.parent}: {', '.join(near)}." if near else ""
        raise ConfigError(str(path), f"config file not found (tried {file.resolve()}).{hint}")
    yaml = _yaml()
    try:
        with open(file, encoding="utf-8") as f:
            return yaml.load(f, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(str(path), f"not valid YAML: {e}") from None


def save_yaml(data: Any, path: str | os.PathLike) -> None:
    """Writes plain data (such as a `to_config` result) to a YAML file, keys in order.

    Args:
      data: mappings, lists, numbers, strings, booleans and None.
      path: the file to write (its folder is created if needed).

    Returns:
      None.

    Raises:
      TypeError: if ``data`` holds something that is not plain (naming where; for a
        transformation, saying to call `to_config` first). The file is then left as it was.

    Example:
      >>> import gradxform as gx, tempfile, os
      >>> f = os.path.join(tempfile.mkdtemp(), "opt.yaml")
      >>> gx.save_yaml(gx.to_config(gx.sgd(0.1), include_defaults=False), f)
      >>> print(open(f).read().strip())
      name: sgd
      args:
        learning_rate: 0.1
    """
    _check_plain(data, "data")
    # Serialised before the file is opened, so that a failure never truncates an existing file.
    text = _yaml().safe_dump(data, sort_keys=False, default_flow_style=False)
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")


def _check_plain(value: Any, path: str) -> None:
    """Raises ``TypeError`` naming the first entry of ``value`` that YAML cannot write."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if is_transformation(value):
        raise TypeError(
            f"save_yaml: {path} is a transformation, not plain data; write "
            "gx.save_yaml(gx.to_config(tx), path)."
        )
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_plain(k, f"{path} key {k!r}")
            _check_plain(v, f"{path}[{k!r}]")
        return
    what = "function" if callable(value) else type(value).__name__
    raise TypeError(
        f"save_yaml: {path} is a {what} ({value!r}), not plain data (mappings, lists, numbers, "
        "strings, booleans, None); gx.to_config turns a transformation into such data."
    )


__all__ = ["ConfigError", "from_config", "load_yaml", "save_yaml", "to_config"]
