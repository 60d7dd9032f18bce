"""Operations: the metrics the workers serve, and consumer lag judged as Burrow does."""
