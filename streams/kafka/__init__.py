"""Kafka plumbing: the bus's clients, its topics, and where a key's records go."""
