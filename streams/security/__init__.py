"""Security: the bus's principals, what each may do on the broker (derived from the catalog
and the contracts), their credentials, and keeping the broker's ACLs equal to those grants."""
