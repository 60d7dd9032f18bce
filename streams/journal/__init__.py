"""The citizen journal: what the bus did about one person, and what it would do today."""
