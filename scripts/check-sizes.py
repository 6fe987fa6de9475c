#!/usr/bin/env python3
"""Checks the code-shape rule of ARCHITECTURE.md: no function over 120 lines, no source file over
700 lines outside its tests (a file's lines before its top-level `#[cfg(test)]` module). Tests
(`tests/` directories, `#[cfg(test)]` modules) and generated data are not counted.

It reads rustfmt-formatted code: a function ends at the first line that is its own indentation
followed by `}`. Usage: python3 scripts/check-sizes.py [CRATES_DIR]. Exit 1 on a violation.
"""

import re
import sys
from pathlib import Path

MAX_FUNCTION = 120
MAX_FILE = 700
FN = re.compile(r"^(\s*)(?:pub(?:\([a-z:]+\))? )?(?:const )?(?:async )?(?:unsafe )?fn (\w+)")


def code_lines(path):
    """The file's lines up to its top-level test module."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            return lines[:i]
    return lines


def long_functions(lines):
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent, name = m.group(1), m.group(2)
        for j in range(i + 1, len(lines)):
            if lines[j] == indent + "}":
                if j - i + 1 > MAX_FUNCTION:
                    yield name, i + 1, j - i + 1
                break


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "crates"
    problems = []
    files = sorted(p for p in root.glob("*/src/**/*.rs"))
    for path in files:
        lines = code_lines(path)
        if len(lines) > MAX_FILE:
            problems.append(f"{path}: {len(lines)} lines outside tests (at most {MAX_FILE})")
        for name, line, length in long_functions(lines):
            problems.append(f"{path}:{line}: fn {name} is {length} lines (at most {MAX_FUNCTION})")
    for p in problems:
        print(p)
    print(f"code shape: {len(files)} files checked, {len(problems)} over the limits")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
