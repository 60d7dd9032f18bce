"""Private stacks (``tests/integration/private_stack.py``) listen below the ephemeral range.

A port in that range may be the local end of a client connection the test session holds open;
a private stack placed there failed with "port in use" for as long as that connection lived.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.private_stack import PRIVATE_PORTS, PRIVATE_SLOTS

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def test_every_private_port_is_below_the_ephemeral_range() -> None:
    first_ephemeral = int(EPHEMERAL.read_text().split()[0]) if EPHEMERAL.exists() else 32768
    highest = PRIVATE_PORTS + (PRIVATE_SLOTS - 1) * 10 + 2  # kafka, controller, registry
    assert highest < first_ephemeral
    assert PRIVATE_PORTS > 1024
