"""`vidprobe backbones`: the backbone families of the registry, one row each, as the README's table (markdown)."""

from __future__ import annotations

from vidprobe.features.backbones import markdown_table


def run() -> str:
    table = markdown_table()
    print(table)
    return table
