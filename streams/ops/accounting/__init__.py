"""Accounting: proof, for a window, that every event has its outcomes and every delivery its
decision (``circulation reconcile``)."""
