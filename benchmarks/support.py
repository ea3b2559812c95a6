"""The tests' sample builders (``tests/reference``), for the benchmarks.

They are not part of the library: the benchmarks find them on the tests' path.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reference.sample_events import sample_lines
from reference.sample_models import make_sample_directory, random_profiles

__all__ = ["make_sample_directory", "random_profiles", "sample_lines"]
