"""The audit trail: one hash-chained record per routing decision, one writer per chain."""
