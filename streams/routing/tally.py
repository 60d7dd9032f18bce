"""What a routed batch decided, counted on the hot path and read by whoever reports it.

The router counts in plain dicts (a Prometheus counter per decision would cost a lock and a
label lookup each); the worker hands the tally of a batch to the metrics and the log line once
the batch is written. It is a routing type: the metrics read it, routing never imports them.
"""

from __future__ import annotations

from collections import Counter as Tally


class RoutingTally:
    """A batch's decisions and dead letters, counted in plain dicts on the routing hot path."""

    __slots__ = ("dead_letters", "delivered", "invalid_contracts", "withheld")

    def __init__(self) -> None:
        self.delivered: Tally[tuple[str, str]] = Tally()
        self.withheld: Tally[tuple[str, str, str]] = Tally()
        self.dead_letters: Tally[str] = Tally()
        self.invalid_contracts = 0
        """Recorded contracts that do not compile against the catalog, as of this batch (a
        level, not a count: taking the tally keeps it)."""

    def decision(self, subscriber: str, contract: str, reason: str | None) -> None:
        """One contract's verdict on one event: delivered when ``reason`` is None."""
        if reason is None:
            self.delivered[(subscriber, contract)] += 1
        else:
            self.withheld[(subscriber, contract, reason)] += 1

    def dead_letter(self, topic: str) -> None:
        """A record of ``topic`` went to the dead-letter topic."""
        self.dead_letters[topic] += 1

    def take(self) -> RoutingTally:
        """What was counted so far; counting starts again from zero."""
        taken = RoutingTally()
        taken.delivered, self.delivered = self.delivered, taken.delivered
        taken.withheld, self.withheld = self.withheld, taken.withheld
        taken.dead_letters, self.dead_letters = self.dead_letters, taken.dead_letters
        taken.invalid_contracts = self.invalid_contracts
        return taken

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts by contract, for the batch's log line (contract ids and reasons only)."""
        withheld: Tally[str] = Tally()
        for (_, contract, reason), count in self.withheld.items():
            withheld[f"{contract}:{reason}"] += count
        return {"delivered": {contract: n for (_, contract), n in self.delivered.items()},
                "withheld": dict(withheld), "dead_letters": dict(self.dead_letters)}
