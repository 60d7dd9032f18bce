"""The HTTP gateway: the bus for parties that run no Kafka client.

A provider's batch system POSTs CloudEvents; a commune's portal enrols the families it follows
and records their consent. The gateway authenticates each caller by its bearer token
(:mod:`streams.security.tokens`), lets it touch only its own datasets or contracts, and
connects to Kafka itself as ``bus-gateway``.
"""
