"""Rendering a run folder: ``report.md``/``report.html`` with figures and tables. It sits above every producer
(run, compare, the analyses): they write typed results into the run folder, and the report reads them."""

from search.report.page import build_report, write_report

__all__ = ["build_report", "write_report"]
