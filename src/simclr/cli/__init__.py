"""The ``simclr`` command: parses arguments, calls the library function a Python user calls, prints its
result.

Bad input (missing files, corrupt data, unknown config keys, out-of-range values) ends with one line on
stderr and exit code 2; an interrupted pretraining run saves its checkpoint and exits with 130 (Ctrl-C) or 143
(SIGTERM).

Modules: :mod:`~simclr.cli.parser` (the arguments; ``simclr eval``'s generated from the protocols' schemas),
:mod:`~simclr.cli.commands` (each command, through :mod:`simclr.api`), :mod:`~simclr.cli.render` (their text
output), :mod:`~simclr.cli.common` (the flags and checks the commands share), :mod:`~simclr.cli.search`
(``search`` and ``duplicates``) and :mod:`~simclr.cli.app` (:func:`main`: errors, interruptions).
"""

from simclr.cli.app import main
from simclr.cli.parser import build_parser

__all__ = ["build_parser", "main"]
