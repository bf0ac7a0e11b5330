"""Prints one closing line for a `make test` run made of several pytest runs: their JUnit reports summed.

    python tests/totals.py REPORT.xml [REPORT.xml ...]   ->   "totals: 412 passed, 0 failed, 3 skipped"
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(paths: list[str]) -> int:
    passed = failed = skipped = 0
    for path in paths:
        if not Path(path).exists():
            continue  # that part selected no test
        root = ET.parse(path).getroot()
        for suite in root.iter("testsuite"):
            tests, errors, failures = (int(suite.get(k, 0)) for k in ("tests", "errors", "failures"))
            skips = int(suite.get("skipped", 0))
            failed += errors + failures
            skipped += skips
            passed += tests - errors - failures - skips
    print(f"totals: {passed} passed, {failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
