"""``/journal``: the person's own journal page, where they may withdraw consent or object.

In production the person signs in with FranceConnect, which is not wired here. A development
sign-in stands in for it (``CIRCULATION_JOURNAL_DEV_SIGN_IN``), off by default and refused at
start unless the bus is PLAINTEXT and the gateway listens on loopback (:func:`check_sign_in`):
whoever types a NIR reads that person's journal, which only a development machine may allow.

A session is a random id, kept in this process's memory with the person's subject reference
(never the NIR) and a CSRF token; its cookie is ``HttpOnly`` and ``SameSite=Strict``. The page
shows the signed-in person's entries only, and the contracts that decide about them. A
withdrawal or an objection is written as the portal's are (:func:`streams.state.subjects
.set_consent`, erasure notices included); the page is shown again once the view has read the
write back, so the new state is on it at once.

These routes answer HTML to a browser, not JSON to a program: they are left out of the
OpenAPI document. The gateway answers no other journal: only the parties hold gateway tokens,
and the operator answering a person's request reads the journal with ``circulation journal``,
under the operator's own Kafka credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qs

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from connectors.gateway import journal_page
from connectors.gateway.journal_page import Choice
from connectors.gateway.problems import Problem
from streams.journal.follower import JournalFollower, JournalFollowerStopped
from streams.journal.queries import Receiver, journal, receivers
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.directory import SubjectFile
from streams.state.subject_lists import identifier_problem
from streams.state.subjects import Subject, resolve, set_consent

router = APIRouter(prefix="/journal", include_in_schema=False)

COOKIE: Final = "circulation_journal"
MAX_FORM_BYTES: Final = 4096
MAX_FORM_FIELDS: Final = 8
MAX_SESSIONS: Final = 10_000
EVIDENCE_PREFIX: Final = "circulation-journal-"
"""A page withdrawal's evidence reference: this page, then the choice's own id."""


class SignInRefused(ValueError):
    """The development sign-in asked for where it must not run."""


def check_sign_in(settings: Settings, host: str) -> None:
    """Refuse a development sign-in on anything but a PLAINTEXT bus served on loopback."""
    if not settings.journal_dev_sign_in:
        return
    if settings.security_protocol != "PLAINTEXT":
        raise SignInRefused("CIRCULATION_JOURNAL_DEV_SIGN_IN: the development sign-in runs "
                            "only on a PLAINTEXT (development) bus")
    if not _loopback(host):
        raise SignInRefused("CIRCULATION_JOURNAL_DEV_SIGN_IN: the development sign-in runs "
                            "only on a gateway listening on loopback (--host 127.0.0.1)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Session:
    subject: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    done: str | None = None
    """The contract of the last choice recorded, to say so once."""


class Sessions:
    """Signed-in persons by session id, in memory (a restart signs everyone out)."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def open(self, subject: str) -> str:
        if len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = Session(subject)
        return session_id

    def of(self, request: Request) -> Session | None:
        return self._sessions.get(request.cookies.get(COOKIE, ""))

    def close(self, request: Request) -> None:
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)


CATCH_UP_TIMEOUT_S: Final = 10.0
"""How long a page waits for the view to read what was written before it (a view being
rebuilt takes minutes: the page says so rather than hang)."""


class JournalUnavailable(Exception):
    """The view cannot answer now: the page says so in French, with a ``503``; the rest of
    the gateway stays in service."""

    def __init__(self, why: str, later: bool = True) -> None:
        super().__init__(why)
        self.why = why
        self.later = later
        """Whether trying again later may help (not for a service that takes no choice)."""


async def caught_up(request: Request) -> JournalFollower:
    """The follower of the gateway's view, once the view holds everything written before
    this request; :class:`JournalUnavailable` when the gateway keeps no view, it stopped
    following, or it is not caught up within :data:`CATCH_UP_TIMEOUT_S`."""
    follower: JournalFollower | None = getattr(request.app.state, "journal", None)
    if follower is None:
        raise JournalUnavailable("Ce service ne tient pas de journal.")
    try:
        await asyncio.wait_for(follower.caught_up(), CATCH_UP_TIMEOUT_S)
    except JournalFollowerStopped:
        raise JournalUnavailable("Le journal est momentanément indisponible.") from None
    except TimeoutError:
        raise JournalUnavailable("Le journal est en cours de mise à jour.") from None
    return follower


async def unavailable(_: Request, exc: Exception) -> Response:
    """The page of a journal that cannot answer now (:class:`JournalUnavailable`)."""
    assert isinstance(exc, JournalUnavailable)
    answer = _html(journal_page.unavailable(exc.why, exc.later), 503)
    if exc.later:
        answer.headers["Retry-After"] = "60"
    return answer


def _sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.sessions
    return found


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status, headers={
        "Cache-Control": "no-store", "Content-Security-Policy":
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'", "Referrer-Policy": "no-referrer"})


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Problem(413, "the form is too large")
    try:
        parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than any of the page's forms has: not one of them
        raise Problem(400, "the form has too many fields") from None
    return {name: values[0] for name, values in parsed.items()}


@router.get("")
async def show(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    session = _sessions(request).of(request)
    if session is None:
        return _html(journal_page.sign_in(settings.journal_dev_sign_in))
    view = (await caught_up(request)).view
    today = datetime.now(UTC).date()
    contracts = view.contracts()
    file = view.file_of(session.subject)
    found = receivers(contracts, file, today)
    done, session.done = session.done, None
    return _html(journal_page.journal_page(
        journal(view, session.subject), found, _choices(contracts, file, found),
        session.csrf, settings.journal_dev_sign_in, done))


def _choices(contracts: dict[str, Contract], file: SubjectFile,
             found: list[Receiver]) -> list[Choice]:
    """One line per contract deciding about the person, with the action it allows; then
    every other contract where the person has a choice to take back (a consent granted to an
    ``enrolled`` contract that no longer enrols them, a contract not in force today): GDPR
    art. 7(3), withdrawing is as easy as giving."""
    seen: dict[str, Choice] = {}
    for each in found:
        if each.contract_id not in seen:
            consent = _consent(file, each.contract_id)
            seen[each.contract_id] = Choice(each, consent, _action(
                contracts[each.contract_id], consent, concerned=True))
    for contract_id, contract in sorted(contracts.items()):
        consent = _consent(file, contract_id)
        action = _action(contract, consent, concerned=_concerned(contract, file))
        if contract_id not in seen and action is not None:
            seen[contract_id] = Choice(_receiver(contract), consent, action)
    return list(seen.values())


def _consent(file: SubjectFile, contract_id: str) -> str | None:
    standing = file.get(contract_id)
    return standing.consent if standing else None


def _concerned(contract: Contract, file: SubjectFile) -> bool:
    standing = file.get(contract.id)
    return contract.population == "all" or (standing is not None and standing.enrolled)


def _receiver(contract: Contract) -> Receiver:
    """A contract taking no decision about the person today, as a line of their choices."""
    return Receiver(min(contract.datasets), contract.id, contract.subscriber, contract.purpose,
                    contract.legal_basis, contract.consent, False, (), None)


def _action(contract: Contract, consent: str | None, concerned: bool) -> str | None:
    """Withdraw a consent standing granted, or object to an ``opt_out`` contract concerning
    the person; nothing under a revoked contract (revocation is final: nothing to stop)."""
    if contract.revoked:
        return None
    if contract.consent == "opt_in" and consent == "granted":
        return "withdraw"
    if contract.consent == "opt_out" and consent != "withdrawn" and (
            concerned or consent == "granted"):
        return "object"
    return None


@router.post("/connexion")
async def sign_in(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not settings.journal_dev_sign_in:
        return _html(journal_page.sign_in(False), 404)
    nir = (await _form(request)).get("nir", "")
    problem = identifier_problem(nir) if nir else "aucun numéro saisi"
    if problem is None and "".join(nir.split()).isdigit() and len("".join(nir.split())) == 9:
        problem = "un SIREN désigne une entreprise, pas une personne"
    if problem is not None:
        return _html(journal_page.sign_in(True, "Ce numéro n'est pas valide : " + problem), 422)
    reference = resolve(settings, [nir])[0].reference
    session_id = _sessions(request).open(reference)
    answer = RedirectResponse("/journal", 303)
    answer.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/journal")
    return answer


def _checked(request: Request, form: dict[str, str]) -> Session:
    session = _sessions(request).of(request)
    if session is None or not secrets.compare_digest(form.get("csrf", ""), session.csrf):
        raise Problem(403, "sign in again: the session or the form is no longer valid")
    return session


@router.post("/deconnexion")
async def sign_out(request: Request) -> Response:
    _checked(request, await _form(request))
    _sessions(request).close(request)
    answer = RedirectResponse("/journal", 303)
    answer.delete_cookie(COOKIE, path="/journal")
    return answer


@router.post("/choix")
async def choose(request: Request) -> Response:
    """Withdraw consent (opt-in) or object (opt-out) for one contract deciding about the
    person; any other contract is refused, whoever names it."""
    session = _checked(request, form := await _form(request))
    follower = await caught_up(request)
    today = datetime.now(UTC).date()
    contracts = follower.view.contracts()
    file = follower.view.file_of(session.subject)
    allowed = {c.receiver.contract_id: c for c in _choices(
        contracts, file, receivers(contracts, file, today)) if c.action is not None}
    contract_id = form.get("contract", "")
    if contract_id not in allowed:
        raise Problem(404, "no choice to make for that contract")
    settings: Settings = request.app.state.settings
    if settings.journal_collector_siret is None:
        raise JournalUnavailable("Ce service n'enregistre pas encore de choix en ligne : "
                                 "adressez-vous à l'administration concernée.", later=False)
    try:  # collected by this page's administration, not by the subscriber
        await set_consent(settings, contracts[contract_id], [Subject("", session.subject)],
                          "withdrawn", "online_portal",
                          collected_by=settings.journal_collector_siret,
                          evidence_ref=f"{EVIDENCE_PREFIX}{uuid.uuid4().hex}")
    except KafkaError as exc:
        raise Problem(503, f"the bus did not acknowledge ({type(exc).__name__}): try "
                           "again") from None
    session.done = contract_id  # written: the next page says so, whatever the view does
    with contextlib.suppress(JournalUnavailable):  # the page itself then says it is late
        await caught_up(request)  # read your write: the page shows the new state
    return RedirectResponse("/journal", 303)
