"""The ways in and out of the bus: HTTP ingest, batch files, webhook and file sinks."""
