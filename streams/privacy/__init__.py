"""Privacy: subject references and pairwise pseudonyms, the two secrets behind them, and the
redaction of what the bus refuses. No raw NIR goes past what these modules produce."""
