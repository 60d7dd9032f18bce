"""What a log line may say about a state record that cannot be folded: where, never what.

Anyone with write access to a state topic can write anything to it, and the libraries that
refuse a record quote it: pydantic repeats the input of the field it refuses, the Avro reader
the symbols and defaults of the writer's schema. Either may hold a NIR. A skipped record is
therefore described by the places pydantic names and its messages (the contract's validators
never repeat a value), or by the error's type alone; the topic, partition and offset logged
with it let an operator read the record itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from streams.state.contract import place_name


def record_error(error: Exception, record: Any = None) -> str:
    """Why a state record was skipped, without any value it holds.

    ``record`` (the record's JSON form, when it was decoded) lets places show positions.
    """
    if isinstance(error, ValidationError):
        return "; ".join(f"{place_name(tuple(e['loc']), record) or '(record)'}: {e['msg']}"
                         for e in error.errors(include_input=False, include_url=False,
                                               include_context=False))
    return f"{type(error).__name__} (its message is not repeated: it may quote the record)"
