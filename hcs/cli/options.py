"""Command options built from the stage models of :mod:`hcs.params`.

:func:`with_params` adds one typer option per field of a model to a command (for
:class:`hcs.params.AnalyzeParams` the fields of every nested stage model too, each name once),
validates the values into the model before the command's body runs, and passes the model as
the command's ``params`` argument. The rules:

- field ``fields_per_task`` -> option ``--fields-per-task``; its description is the help;
  ``json_schema_extra={"short": "-a"}`` adds a short flag;
- ``Literal`` -> the choices as the metavar (``student|welch``); a value outside them is refused
  by :func:`hcs.params.validate` with one line (exit 2) before any work;
- ``bool`` -> a flag (``--strict``), or ``--gallery/--no-gallery`` when it defaults to True;
- ``tuple``/``list`` -> comma-separated (``--wells A01,B03``; repeating the option adds more);
- ``dict`` -> ``KEY=VALUE,...`` text, parsed by the model.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hcs.params import from_options, option_name, options_of

__all__ = ["OptionSpec", "model_options", "with_params"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class OptionSpec:
    """One command-line option made from a model field."""

    name: str
    info: FieldInfo
    panel: str | None = None  # help section (the stage of a nested model)

    @property
    def decls(self) -> list[str]:
        """The option's names: ``--name`` (``--name/--no-name``) and its short flag."""
        long = option_name(self.name)
        if self._base() is bool and self.info.default is True:
            long = f"{long}/--no-{long[2:]}"
        extra = self.info.json_schema_extra
        short = extra.get("short") if isinstance(extra, dict) else None
        return [long, *([str(short)] if short else [])]

    def _base(self) -> Any:
        ann = self.info.annotation
        if typing.get_origin(ann) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = args[0] if len(args) == 1 else str
        return ann

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The allowed values of a ``Literal`` field."""
        base = self._base()
        return tuple(str(a) for a in typing.get_args(base)) if typing.get_origin(
            base) is Literal else None

    def annotation(self) -> Any:
        """The type typer parses the option as (validation is the model's)."""
        base = self._base()
        origin = typing.get_origin(base)
        if base is bool:
            return bool
        if origin in (tuple, list):
            return list[str] | None
        if base in (int, float, str) and self.info.is_required():
            return base
        if base in (int, float, str):
            return base | None
        return str | None

    def option(self, repeatable: bool = False) -> Any:
        """The ``typer.Option`` of this field (``repeatable``: given once per value)."""
        info = self.info
        if info.is_required():
            default: Any = ...
        elif info.default_factory is not None or typing.get_origin(self._base()) in (tuple,
                                                                                     list):
            default = None
        else:
            default = info.default
        metavar = None
        if repeatable:
            metavar = "VALUE (repeatable)"
        elif self.choices:
            metavar = "|".join(self.choices)
        elif typing.get_origin(self._base()) in (tuple, list):
            metavar = "A,B,..."
        elif typing.get_origin(self._base()) is dict:
            metavar = "KEY=VALUE,..."
        return typer.Option(default, *self.decls, help=info.description, metavar=metavar,
                            show_default=default not in (None, ...),
                            rich_help_panel=self.panel)


def model_options(model: type[BaseModel]) -> dict[str, OptionSpec]:
    """The options of a model (:func:`hcs.params.options_of`), those of a nested stage model
    in its own help section.

    Examples
    --------
    >>> from hcs.params import AnalyzeParams
    >>> opts = model_options(AnalyzeParams)
    >>> opts["test"].decls, opts["test"].choices, opts["test"].panel
    (['--test'], ('student', 'welch'), 'Stats options')
    >>> opts["gallery"].decls
    ['--gallery/--no-gallery']
    """
    panels = {}
    for stage, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            for name in options_of(info.annotation):
                if name not in model.model_fields:
                    panels.setdefault(name, f"{stage.capitalize()} options")
    return {name: OptionSpec(name, info, panels.get(name))
            for name, info in options_of(model).items()}


def build_params(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    """The model from the option values of a command; options not given (None, an empty
    list) take the model's defaults."""
    return from_options(model, **{k: v for k, v in values.items()
                                  if v is not None and v != []})


def with_params(model: type[BaseModel], repeatable: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorator: add the options of ``model`` to a typer command whose function takes
    ``params: <model>``; the body receives the validated model.

    The command's own parameters (paths, ``--out``, ``--overwrite``, ``--quiet``) come first in
    ``--help``, then the model's options in field order. An option named in ``repeatable``
    may be given several times: the model gets its first value and the function every value
    as its ``<name>_all`` argument (``hcs analyze --layout A=a.csv --layout B=b.csv``).
    """
    specs = model_options(model)

    def decorate(func: F) -> F:
        hints = typing.get_type_hints(func)
        alls = {f"{n}_all" for n in repeatable}
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(func).parameters.values()
               if p.name != "params" and p.name not in alls]
        clash = {p.name for p in own} & set(specs)
        if clash:
            raise TypeError(f"{func.__name__}: parameters {sorted(clash)} are also fields of "
                            f"{model.__name__}")
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                   default=spec.option(repeatable=name in repeatable),
                                   annotation=list[str] if name in repeatable
                                   else spec.annotation()) for name, spec in specs.items()]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in specs if name in kwargs}
            every = {}
            for name in repeatable:
                given = list(values.get(name) or [])
                every[f"{name}_all"] = given
                values[name] = given[0] if given else None
            return func(**kwargs, params=build_params(model, values), **every)

        params = own + added
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer must see this signature, not the function's
        return wrapper  # type: ignore[return-value]

    return decorate
