"""Fail when a Python module of src/ or tests/ is longer than the ceiling in pyproject.toml.

The ceiling and its exceptions live in ``[tool.simclr.lint]`` (``max-module-lines`` and
``module-size-exceptions``, a table of path = reason): an exception is named and justified there, not here.
Run by scripts/lint.sh; exits 1 and lists the modules over the ceiling (and exceptions that no longer apply).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["simclr"]["lint"]
    ceiling: int = settings["max-module-lines"]
    exceptions: dict[str, str] = settings.get("module-size-exceptions", {})
    problems = []
    for folder in ("src", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            lines = len(path.read_text().splitlines())
            if lines > ceiling and name not in exceptions:
                problems.append(f"{name}: {lines} lines (ceiling {ceiling}): split it, or name it with a "
                                "reason in [tool.simclr.lint.module-size-exceptions]")
            elif lines <= ceiling and name in exceptions:
                problems.append(f"{name}: {lines} lines, within the ceiling: drop its exception")
    for name in exceptions:
        if not (ROOT / name).is_file():
            problems.append(f"{name}: named in module-size-exceptions but not there")
    done = f"module sizes: every module within {ceiling} lines or excepted"
    print("\n".join(problems) or done, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
