"""The library's exceptions. Each message says what is wrong and where."""

from __future__ import annotations


class TastemakerError(Exception):
    """Base class for every error the library raises on purpose."""


class DataError(TastemakerError, ValueError):
    """Input data is malformed. The message names the file, the line and the problem."""

    def __init__(self, problem: str, *, file: str | None = None, line: int | None = None) -> None:
        self.problem = problem
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f"{file}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(f"{where}{problem}")


class MissingDataError(TastemakerError, FileNotFoundError):
    """A dataset file is not where the loader expected it."""


class UnknownIdError(TastemakerError, KeyError):
    """An external user or item id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ArtifactError(TastemakerError):
    """An artifact is missing, corrupted, or of an incompatible format or schema."""


class NotFittedError(TastemakerError, RuntimeError):
    """A model was used before ``fit`` or ``load``."""


class MissingExtraError(TastemakerError, ImportError):
    """An optional capability needs an extra that is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"this needs '{package}': pip install 'tastemaker[{extra}]'")
