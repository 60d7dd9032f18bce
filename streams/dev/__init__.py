"""Development tooling, not the product: the local stack, the demo and synthetic data."""
