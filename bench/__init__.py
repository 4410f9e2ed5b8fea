"""Benchmarks: standalone scripts (`python bench/<name>.py`) and their runner (`python -m bench`).

The scripts import their siblings as top-level modules (`from _scratch import
...`), as Python does for a script's own directory. The runner puts this
directory on sys.path so that it imports them the same way, each module then
loaded once under one name.
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
