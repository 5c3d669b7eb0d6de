"""The one error of the data layer: bad or badly laid-out input, naming the files and what is wrong with them."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DataError", "Problem"]

Problem = tuple[str, str]  # (file(s), what is wrong)
_MAX_LISTED = 20


class DataError(ValueError):
    """Bad or badly laid-out input data. ``problems`` lists ``(file, message)`` pairs when known."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    @classmethod
    def from_problems(cls, problems: Sequence[Problem], context: str = "invalid input data") -> DataError:
        """One error listing (up to 20 of) the problems, one ``file: message`` per line."""
        lines = [f"  {f}: {m}" for f, m in problems[:_MAX_LISTED]]
        if len(problems) > _MAX_LISTED:
            lines.append(f"  ... and {len(problems) - _MAX_LISTED} more")
        hint = "(set skip_invalid to True, e.g. --skip_invalid True, to skip these items instead)"
        return cls(f"{context}: {len(problems)} problem(s) {hint}\n" + "\n".join(lines), problems)

    @classmethod
    def in_file(cls, path, message: str) -> DataError:
        """The error for one bad file: the message starts with the file, ``problems`` holds ``(file, message)``."""
        return cls(f"{path}: {message}", [(str(path), message)])
