"""The ``steersearch`` command line, at the top of ``search/``: parsing (``main``), the commands that compose
the Python API (``commands``), pre-run checks (``checks``), display and the offline demo."""

from search.cli.main import main

__all__ = ["main"]
