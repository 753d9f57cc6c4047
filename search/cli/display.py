"""Plain-text rendering for the terminal."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping


def summary(settings: Mapping[str, object]) -> str:
    """The one-line summary of a pair's (or a saved vector's) settings."""
    pair = " / ".join(repr(p) for p in settings.get("pair") or [])  # type: ignore[attr-defined]
    what = f"pair {pair}" if pair else f"vector {settings.get('vector')}"
    return (
        f"model {settings['model']}  {what}  layer {settings['layer']}  coeff {settings['coeff']}  "
        f"frac {settings['frac']}  positions {settings['positions']}  seed {settings['seed']}"
    )


def side_by_side(prompt: str, left: list[str], right: list[str], heading: str) -> str:
    """Two wrapped columns, unsteered | steered, numbered, under a one-line ``heading``."""
    width = max(30, (shutil.get_terminal_size((120, 20)).columns - 7) // 2)
    head = [
        heading,
        f"prompt: {prompt!r}",
        "",
        f"    {'UNSTEERED':<{width}} | STEERED",
        f"    {'-' * width}-+-{'-' * width}",
    ]
    lines = head
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        wa = textwrap.wrap(a.replace("\n", " ") or "(empty)", width)
        wb = textwrap.wrap(b.replace("\n", " ") or "(empty)", width)
        for j in range(max(len(wa), len(wb))):
            tag = f"{i + 1:>2}. " if j == 0 else "    "
            lines.append(f"{tag}{(wa[j] if j < len(wa) else ''):<{width}} | {wb[j] if j < len(wb) else ''}")
        lines.append("")
    return "\n".join(lines)
