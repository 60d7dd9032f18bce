"""The session's closing checks (``tests/conftest.py``) fail the session when they find
anything, and say what they read when they do not: run on an inner pytest session whose
broker access is replaced by what each case needs."""

from __future__ import annotations

import pytest

import tests.conftest as harness
from streams.settings import Settings

pytest_plugins = ("pytester",)

INNER_CONFTEST = "from tests.conftest import pytest_terminal_summary, services  # noqa: F401\n"
INNER_TEST = "def test_uses_the_broker(services):\n    assert services.bootstrap\n"


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("CIRCULATION_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("CIRCULATION_SCHEMA_REGISTRY_URL", "http://127.0.0.1:1/apis/ccompat/v7")

    async def start(_: Settings) -> harness.SessionStart:
        return harness.SessionStart({0: 10})

    monkeypatch.setattr(harness, "session_start", start)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = session\n")
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TEST)
    return pytester


def _found(report: list[str], problems: list[str]) -> object:
    async def closing_checks(_: Settings, start: harness.SessionStart
                             ) -> tuple[list[str], list[str]]:
        assert start.audit_ends == {0: 10}  # what the session found at its start
        return report, problems
    return closing_checks


def test_a_finding_fails_the_session_naming_the_place(inner: pytest.Pytester,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "closing_checks", _found(
        ["raw-NIR scan: 3 records"], ["raw NIR at provider.x[0]@7 value"]))
    result = inner.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*closing checks failed in 1 place*",
                                 "raw NIR at provider.x?0?@7 value"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_clean_session_says_what_the_checks_read(inner: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "closing_checks", _found(
        ["raw-NIR scan: 3 records: 0 raw NIR(s)", "audit chains: 2 records: 0 break(s)"], []))
    result = inner.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["raw-NIR scan: 3 records: 0 raw NIR(s)",
                                 "audit chains: 2 records: 0 break(s)"])
