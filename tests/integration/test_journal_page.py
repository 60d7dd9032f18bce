"""The journal page, in a real browser (Debian's chromium driven by Playwright), on a real
gateway following the real bus.

A person signs in with the development sign-in, sees their deliveries, the decisions withheld
and who would receive what today, never their NIR nor another person's data; then, with the
keyboard alone, withdraws their consent under an opt-in contract. The page shows the effect at
once, the subscriber receives an erasure notice, and the person's next event is no longer
delivered under that contract. The withdrawal is recorded as collected online by the
administration that runs the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from streams.dev.synthetic import Person
from streams.kafka.topics import CONSENTS
from streams.state.subjects import resolve, set_consent
from tests.integration.gateway_process import gateway_client
from tests.integration.routing_harness import (
    Bus,
    audit_start,
    beginning,
    event_for,
    fresh_people,
    header,
    read_all,
)

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MAX_TABS = 60
COLLECTOR = "41002605800017"
"""The SIRET of the administration running the page in this test."""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                    args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _tab_to(page: Page, label: str) -> None:
    """Move the focus with Tab alone until it is on the element labelled ``label``."""
    for _ in range(MAX_TABS):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => document.activeElement && (document.activeElement.getAttribute("
            "'aria-label') || document.activeElement.id)")
        if focused == label:
            return
    raise AssertionError(f"{label!r} is not reachable with Tab")


async def _until_caught_up(page: Page, timeout: float = 300) -> None:
    """Reload the signed-in page until the gateway's new view has read the trail: a view
    rebuilding a long trail (the whole suite's) answers its 503 page meanwhile, which says
    so, and is no failure of the page's."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.query_selector("text=Qui recevrait quoi aujourd'hui"):
        assert await page.query_selector("p.erreur[role=alert]"), await _text(page)
        assert asyncio.get_running_loop().time() < deadline, "the journal view never caught up"
        await asyncio.sleep(2)
        await page.goto(page.url.split("?")[0])


async def _text(page: Page) -> str:
    return await page.inner_text("body")


def _no_identifier(text: str, person: Person) -> None:
    compact = "".join(text.split())
    assert person.nir[:13] not in compact  # the NIR without its key, and so the NIR


async def test_a_person_reads_their_journal_and_withdraws_with_the_keyboard(
        bus: Bus, browser: Browser, tmp_path: Path) -> None:
    consented = bus.contract("page-optin", {BOURSIER: ["echelon"]}, consent="opt_in")
    objectable = bus.contract("page-optout", {BOURSIER: ["statut"]}, consent="opt_out")
    lawful = bus.contract("page-law", {BOURSIER: ["echelon", "statut"]})
    contracts = [consented, objectable, lawful]
    await bus.apply(*contracts)
    person, other = fresh_people(2)
    await set_consent(bus.settings, consented, resolve(bus.settings, [person.nir]),
                      "granted", "counter")
    start = await audit_start(bus.settings)
    first = await bus.publish([event_for(BOURSIER, person), event_for(BOURSIER, other)])
    await bus.decisions(start, first, contracts)
    notices = await beginning(bus.settings, [consented.delivery_topic])
    consents = await beginning(bus.settings, [CONSENTS])

    env = {**bus.cli_env, "CIRCULATION_JOURNAL_DIR": str(tmp_path / "journal"),
           "CIRCULATION_JOURNAL_DEV_SIGN_IN": "true",
           "CIRCULATION_JOURNAL_COLLECTOR_SIRET": COLLECTOR}
    async with gateway_client(env, tmp_path / "gateway.log") as client:
        page = await browser.new_page()
        await page.goto(f"{client.base_url}/journal")
        signed_out = await _text(page)
        assert "Connexion de développement" in signed_out
        assert consented.id not in signed_out

        await _tab_to(page, "nir")
        await page.keyboard.type(person.nir)
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        await _until_caught_up(page)
        shown = await _text(page)
        _no_identifier(await page.content(), person)
        for contract in contracts:
            assert contract.id in shown
            assert contract.purpose in shown
        assert "recevrait : echelon" in shown
        rows = await page.locator("table", has_text="Conservées jusqu'au").locator(
            "tbody tr").all_inner_texts()
        mine = [row for row in rows if any(c.id in row for c in contracts)]
        assert len(mine) == len(contracts)  # theirs, not the other person's too
        assert bus.reference(person) not in await page.content()
        assert await page.locator("script").count() == 0  # the page needs no script

        withdraw = f"Retirer mon accord pour la convention {consented.id}"
        await _tab_to(page, withdraw)
        await page.keyboard.press("Enter")
        await page.wait_for_selector("text=Votre choix est enregistré")
        after = await _text(page)
        assert "accord retiré ou opposition" in after
        row = page.locator("table", has_text="Si vos informations").locator(
            "tr", has_text=consented.subscriber)
        assert "vous n'avez pas donné votre accord" in await row.inner_text()
        assert await page.locator(f"[aria-label='{withdraw}']").count() == 0
        assert await page.locator(
            f"[aria-label='M\\'opposer pour la convention {objectable.id}']").count() == 1
        _no_identifier(await page.content(), person)

    prefix = f"{consented.id}/{bus.reference(person)}/".encode()
    recorded = [bus.serde.decode(r.value)[1] for r in await read_all(
        bus.settings, consents, lambda r: bytes(r.key or b"").startswith(prefix))]
    assert [(c["status"], c["channel"], c["collected_by"]) for c in recorded] == [
        ("granted", "counter", consented.subscriber_siret),
        ("withdrawn", "online_portal", COLLECTOR)]
    assert recorded[-1]["evidence_ref"].startswith("circulation-journal-")
    notice = await bus.delivered(consented, 1, event_type="erasure_notice", start=notices)
    assert [r.key.decode() for r in notice if header(r, "ce_type") == "erasure_notice"] == [
        bus.pseudonym(consented, person)]
    start = await audit_start(bus.settings)
    second = await bus.publish([event_for(BOURSIER, person)])
    decided = await bus.decisions(start, second, contracts)
    assert (decided[(second[0].id, consented.id)]["decision"],
            decided[(second[0].id, consented.id)]["reason"]) == ("withheld", "no_consent")
    assert decided[(second[0].id, lawful.id)]["decision"] == "delivered"
