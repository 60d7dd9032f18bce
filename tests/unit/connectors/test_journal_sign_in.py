"""The journal page's development sign-in runs only where nobody but the developer can reach it:
off by default, and refused at start on a secured bus or off loopback."""

from __future__ import annotations

import pytest

from connectors.gateway.app import create_app
from connectors.gateway.citizen import SignInRefused, check_sign_in
from streams.settings import Settings


def test_the_development_sign_in_is_off_by_default() -> None:
    assert Settings().journal_dev_sign_in is False
    check_sign_in(Settings(), "0.0.0.0")  # off: any host will do


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_a_plaintext_gateway_on_loopback_may_offer_it(host: str) -> None:
    check_sign_in(Settings(journal_dev_sign_in=True), host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.4", "gateway.example.fr"])
def test_a_gateway_off_loopback_refuses_to_start_with_it(host: str) -> None:
    with pytest.raises(SignInRefused, match="loopback"):
        create_app(Settings(journal_dev_sign_in=True), host)


def test_a_secured_bus_refuses_it() -> None:
    with pytest.raises(SignInRefused, match="PLAINTEXT"):
        create_app(Settings(journal_dev_sign_in=True, security_protocol="SASL_SSL",
                            sasl_mechanism="SCRAM-SHA-512", sasl_username="bus-gateway",
                            sasl_password="x" * 32), "127.0.0.1")
