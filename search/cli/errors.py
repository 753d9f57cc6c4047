"""The CLI's own error: bad input from the command line, printed as one line with exit code 2."""

from __future__ import annotations

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input from the command line; printed as one line, exit code 2."""
