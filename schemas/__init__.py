"""The event catalog: Avro schemas of every dataset and of the bus's own records."""
