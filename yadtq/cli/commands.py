"""The CLI's command table: each `cmd_<name>` registers itself with `@command`, in the module
that holds it (main.py, processes.py), so no module lists every command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from yadtq.config import Settings

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Command] = {}


def command(fn: Command) -> Command:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def cwd_importable() -> None:
    """`--tasks mypkg.mytasks` finds modules of the folder the command runs in, as `python -m` would."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
