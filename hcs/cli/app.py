"""The ``hcs`` typer application and the error wrapper every command uses."""

from __future__ import annotations

import errno
import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from hcs.errors import HcsError

app = typer.Typer(
    name="hcs",
    help="High-content-screening plate analyzer: export -> OME-Zarr -> cells -> wells -> stats"
    " -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])
#: OSErrors caused by the machine, not by hcs: reported as one line, not a traceback.
_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, line: str | None = None) -> str:
    return f"warning: {message}\n"


def user_errors(func: F) -> F:
    """Print :class:`HcsError` (and an ``OSError`` of the machine: full disk, quota, permission,
    read-only file system) as one line on stderr naming the file, and exit 2, instead of a
    traceback; warnings are printed as one ``warning: ...`` line each."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # "warning: ..." without source lines (formatwarning only shapes printed warnings;
        # warnings recorded by callers, e.g. pytest, are untouched)
        fmt, warnings.formatwarning = warnings.formatwarning, _one_line_warning
        try:
            return func(*args, **kwargs)
        except HcsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except OSError as exc:
            if exc.errno not in _ENVIRONMENT_ERRNOS:
                raise
            # disk full, quota, permissions, read-only file system: one line naming the file
            cause = " (disk full or quota exceeded)" if exc.errno in (errno.ENOSPC,
                                                                        errno.EDQUOT) else ""
            typer.echo(f"error: {exc.filename or 'output'}: {exc.strerror}{cause}", err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(code=130) from None
        finally:
            warnings.formatwarning = fmt

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", help="Print the hcs version and exit."),
) -> None:
    """hcs: instrument exports in, defensible statistics and a report out."""
    if version:
        from hcs import __version__

        typer.echo(__version__)
        raise typer.Exit()
