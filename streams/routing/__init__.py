"""Routing: for each provider record, the pure decision per contract, then the deliveries,
audit records and dead letters to write."""
