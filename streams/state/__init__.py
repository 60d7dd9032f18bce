"""The state routing decides under: contracts, consent and population, written by commands
(durably, then fenced) and followed by every worker."""
