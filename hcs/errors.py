"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class HcsError(Exception):
    """Base class for errors caused by the user's input, not by a bug in hcs."""


class InputError(HcsError, ValueError):
    """Bad input: the message names the file, line, well or field at fault."""


class OutputExistsError(HcsError, FileExistsError):
    """The output exists and the user did not ask to overwrite it."""


class OutputError(HcsError, OSError):
    """Writing the output failed for a reason outside hcs (disk full, quota exceeded); the
    message names the output and the cause, and nothing partial is left behind."""


class PlateDataError(InputError):
    """A plate hcs wrote is damaged: a chunk file is missing or unreadable (the message names
    the well, the field and the file)."""
