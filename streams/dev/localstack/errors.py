"""The one error the local stack raises: its message is meant to be read by a person."""


class StackError(RuntimeError):
    """A component could not be fetched, started, reached or stopped; the message says why."""
