"""What an object holds, directly or through anything it holds: to show that a component keeps
no key object it was not meant to have."""

from __future__ import annotations

import gc
import types
from collections.abc import Iterator

_NOT_HELD = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
             types.MethodType, types.CodeType, types.FrameType)


def held_by(root: object) -> Iterator[object]:
    """Every object reachable from ``root`` through instances and containers; classes, modules
    and functions are not followed (through them everything in the process is reachable)."""
    seen = {id(root)}
    pending = [root]
    while pending:
        current = pending.pop()
        yield current
        for referent in gc.get_referents(current):
            if id(referent) not in seen and not isinstance(referent, _NOT_HELD):
                seen.add(id(referent))
                pending.append(referent)
