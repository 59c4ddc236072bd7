"""`python -m vidprobe`: the `vidprobe` command."""

import sys

from vidprobe.cli import main

sys.exit(main())
