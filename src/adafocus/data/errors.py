"""The one exception type of the data layer; its message always says which file (and line) is at fault."""

from __future__ import annotations


class DataError(RuntimeError):
    """A sample, list line or file that cannot be used.

    Args:
        message: what is wrong.
        path: the offending media file or folder, if any.
        list_file / line: where the sample was declared (1-based line), if known.
    """

    def __init__(
        self, message: str, *, path: str | None = None, list_file: str | None = None, line: int | None = None
    ) -> None:
        if message.startswith("Caught ") and "Traceback" in message:
            # re-raised from a DataLoader worker, whose traceback text PyTorch passes as the message:
            # keep its last line, the original one-line message
            message = message.rstrip().splitlines()[-1].partition(": ")[2]
        self.reason = message
        self.path = path
        self.list_file = list_file
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.list_file is not None:
            where.append(f"{self.list_file}:{self.line}" if self.line is not None else self.list_file)
        if self.path is not None:
            where.append(self.path)
        return f"{' '.join(where)}: {self.reason}" if where else self.reason

    def located(self, *, list_file: str | None, line: int | None) -> DataError:
        """The same error, annotated with the list line that declared the sample."""
        return DataError(self.reason, path=self.path, list_file=list_file, line=line)
