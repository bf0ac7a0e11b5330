"""The common call checked without `inspect.Signature.bind`: positional arguments only, to a
function of plain parameters.

`bind` costs several microseconds a call, and every task is checked twice (at submit and
when a worker reads its message). `QuickCheck.fits` says only "certainly fits": anything
else (keyword arguments, a wrong count, a wrong type) goes to the full check, which words
the error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Expected = tuple[type, ...] | None  # the types a simple annotation asks for (None: anything)


@dataclass(frozen=True)
class QuickCheck:
    least: int  # positional arguments without a default
    expected: tuple[Expected, ...]  # per position

    @classmethod
    def of(cls, signature: inspect.Signature | None,
           expected_of: Callable[[inspect.Parameter], Expected]) -> QuickCheck | None:
        """The check of a signature whose parameters all take a positional argument (no *args,
        **kwargs nor keyword-only ones); None for any other."""
        if signature is None:
            return None
        params = list(signature.parameters.values())
        plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if any(p.kind not in plain for p in params):
            return None
        least = sum(1 for p in params if p.default is inspect.Parameter.empty)
        return cls(least, tuple(expected_of(p) for p in params))

    def fits(self, args: Sequence[Any]) -> bool:
        if not self.least <= len(args) <= len(self.expected):
            return False
        for value, expected in zip(args, self.expected, strict=False):
            # JSON has no separate bool: True must not pass as a number (as in the full check).
            if expected is not None and (not isinstance(value, expected)
                                         or (isinstance(value, bool) and bool not in expected)):
                return False
        return True
