"""The one exception type of the project: every user-facing error names where it happened."""

from __future__ import annotations

from pathlib import Path


class MasraError(Exception):
    """An error in user input or state, located by file, line (1-based row) and field where known.

    str(err) reads like ``data/val.jsonl:12: field 'relevant_windows': start 40 > end 30``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.message}"
