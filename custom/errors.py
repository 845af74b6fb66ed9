"""Input errors a user can fix, reported as one line instead of a traceback through MONAI's config machinery.

`python -m monai.bundle run` evaluates configs through layers of wrappers, so an error raised while building the
network (a model file for another backbone, a missing file) ends a 60-line traceback whose last line says only
"Failed to evaluate ConfigExpression". Errors of this class carry a complete one-line message; `install_hook`
makes an uncaught one print just that line (`LDCT_TRACEBACK=1` shows the whole traceback).
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

TRACEBACK_VARIABLE = "LDCT_TRACEBACK"


class BundleInputError(ValueError):
    """Bad input (a file, a setting) named with the fix, in one line."""


def find_input_error(error: BaseException | None) -> BundleInputError | None:
    """The BundleInputError in `error`'s chain of causes and contexts, if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BundleInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _one_line_hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    found = find_input_error(error)
    if found is None or os.environ.get(TRACEBACK_VARIABLE):
        sys.__excepthook__(kind, error, trace)
        return
    print(f"error: {found} (set {TRACEBACK_VARIABLE}=1 for the traceback)", file=sys.stderr)


def install_hook() -> None:
    """Report uncaught BundleInputErrors in one line (the process still exits with status 1)."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _one_line_hook
