"""The built-in configs, shipped as package data: `vidprobe configs` lists them, `-c NAME` (and `include: NAME`)
loads one by name from any folder."""
