"""The journal page's HTML, in plain French: server-rendered, no script, accessible.

Every value shown is escaped; none is a NIR (the page knows the person by their subject
reference only, and shows not even that). Headings structure the page, every table has a
caption and header cells, every action is a button in a form (reachable with Tab, pressed with
Enter or Space), and the focused element is outlined, so the page is usable with the keyboard
alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Final

from streams.journal.queries import Journal, Line, Receiver

REASONS: Final = {
    "no_consent": "vous n'avez pas donné votre accord",
    "objection": "vous vous y êtes opposé(e)",
    "contract_inactive": "la convention n'est pas en vigueur (révoquée, expirée ou pas "
                         "encore commencée)",
    "not_enrolled": "l'organisme ne suit pas votre dossier",
    "contract_invalid": "la convention est suspendue le temps d'être corrigée",
}
CONSENT_MODES: Final = {
    "opt_in": "avec votre accord seulement",
    "opt_out": "sauf si vous vous y opposez",
    "not_required": "prévue par la loi, sans votre accord",
}
_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem;
       padding: 0 1rem; line-height: 1.5; color: #161616; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }
caption { text-align: left; font-weight: bold; padding: .5rem 0; }
th, td { border: 1px solid #929292; padding: .4rem .6rem; text-align: left;
         vertical-align: top; }
.dev { border: 3px solid #b34000; background: #fff4ec; padding: .8rem; }
.fait { border: 3px solid #18753c; background: #b8fec9; padding: .8rem; }
.erreur { border: 3px solid #ce0500; background: #fee9e9; padding: .8rem; }
button, input { font-size: 1rem; padding: .4rem .8rem; }
a:focus-visible, button:focus-visible, input:focus-visible {
  outline: 3px solid #000091; outline-offset: 2px; }
"""


@dataclass(frozen=True)
class Choice:
    """A contract the person may act on, and the button for it (None: nothing to do)."""

    receiver: Receiver
    consent: str | None
    action: str | None


def page(title: str, body: str, dev_sign_in: bool) -> str:
    banner = ('<p class="dev" role="note"><strong>Connexion de développement.</strong> '
              "Elle remplace FranceConnect sur un poste de développement : elle n'existe "
              "pas en production, où vous vous connectez avec FranceConnect.</p>"
              if dev_sign_in else "")
    return ('<!doctype html><html lang="fr"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<main><h1>{escape(title)}</h1>{banner}{body}</main></body></html>")


def unavailable(why: str, later: bool = True) -> str:
    """The page of a journal that cannot answer now: why, and whether to come back later."""
    retry = (" Réessayez dans quelques minutes : vos choix déjà enregistrés restent "
             "appliqués." if later else "")
    return page("Votre journal", f'<p class="erreur" role="alert">{escape(why)}{retry}</p>',
                False)


def sign_in(dev_sign_in: bool, problem: str | None = None) -> str:
    """The page for a visitor not signed in: how to sign in, nothing personal."""
    text = ("<p>Ce journal montre quelles administrations ont reçu des informations vous "
            "concernant, lesquelles ne les ont pas reçues et pourquoi, et qui les recevrait "
            "aujourd'hui. Connectez-vous pour le consulter.</p>")
    error = f'<p class="erreur" role="alert">{escape(problem)}</p>' if problem else ""
    if not dev_sign_in:
        form = ("<p>Connectez-vous avec FranceConnect depuis le portail de votre "
                "administration.</p>")
    else:
        form = ('<form method="post" action="/journal/connexion">'
                '<p><label for="nir">Numéro de sécurité sociale (NIR)</label><br>'
                '<input id="nir" name="nir" autocomplete="off" inputmode="text" '
                'required maxlength="32"></p>'
                '<p><button type="submit">Se connecter (développement)</button></p></form>')
    return page("Mon journal de circulation des données", text + error + form, dev_sign_in)


def _day(instant: datetime | None) -> str:
    return "—" if instant is None else instant.strftime("%d/%m/%Y %H:%M")


def _table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]],
           empty: str) -> str:
    cells = ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    if not cells:
        return f"<p>{escape(empty)}</p>"
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    return (f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(cells)}</tbody></table>")


def _who(line: Line | Receiver) -> str:
    return escape(line.subscriber or "organisme inconnu")


def _deliveries(lines: Sequence[Line]) -> str:
    return _table("Transmissions", ["Date", "Administration", "Convention", "Finalité",
                                    "Base légale", "Données transmises", "Conservées jusqu'au"],
                  ([_day(line.at), _who(line), escape(line.contract_id),
                    escape(line.purpose or "—"), escape(line.legal_basis or "—"),
                    escape(", ".join(line.fields)), _day(line.kept_until)] for line in lines),
                  "Aucune information vous concernant n'a été transmise.")


def _withheld(lines: Sequence[Line]) -> str:
    return _table("Transmissions refusées", ["Date", "Administration", "Convention",
                                             "Raison"],
                  ([_day(line.at), _who(line), escape(line.contract_id),
                    escape(REASONS.get(line.reason or "", line.reason or "—"))]
                   for line in lines), "Aucune transmission n'a été refusée.")


def _history(found: Journal) -> str:
    lines = sorted([*found.consents, *found.enrolments], key=lambda line: line.at)

    def what(line: Line) -> str:
        if line.kind == "consent":
            return "accord donné" if line.status == "granted" else "accord retiré ou opposition"
        return "inscription" if line.enrolled else "fin d'inscription"

    return _table("Historique de vos choix et inscriptions", ["Date", "Convention",
                                                             "Changement"],
                  ([_day(line.at), escape(line.contract_id), escape(what(line))]
                   for line in lines), "Aucun choix ni aucune inscription enregistrés.")


def _upcoming(receivers: Sequence[Receiver]) -> str:
    def outcome(each: Receiver) -> str:
        if each.would_receive:
            return "recevrait : " + escape(", ".join(each.fields))
        return "ne recevrait rien : " + escape(REASONS.get(each.reason or "", "—"))

    return _table("Si vos informations changeaient aujourd'hui",
                  ["Données", "Administration", "Finalité", "Résultat"],
                  ([escape(each.dataset), _who(each), escape(each.purpose), outcome(each)]
                   for each in receivers),
                  "Aucune administration ne recevrait vos informations.")


def _choices(choices: Sequence[Choice], csrf: str) -> str:
    def cell(choice: Choice) -> str:
        if choice.action is None:
            return "—"
        label = ("Retirer mon accord" if choice.action == "withdraw" else "M'opposer")
        return ('<form method="post" action="/journal/choix">'
                f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
                f'<input type="hidden" name="contract" '
                f'value="{escape(choice.receiver.contract_id)}">'
                f'<button type="submit" aria-label="{escape(label)} pour la convention '
                f'{escape(choice.receiver.contract_id)}">{escape(label)}</button></form>')

    return _table("Vos choix, convention par convention",
                  ["Convention", "Administration", "Finalité", "Transmission", "Action"],
                  ([escape(c.receiver.contract_id), _who(c.receiver),
                    escape(c.receiver.purpose), escape(CONSENT_MODES[c.receiver.consent]),
                    cell(c)] for c in choices),
                  "Aucune convention ne vous concerne.")


def journal_page(found: Journal, receivers: Sequence[Receiver], choices: Sequence[Choice],
                 csrf: str, dev_sign_in: bool, done: str | None = None) -> str:
    """The signed-in person's journal, upcoming view and choices."""
    notice = (f'<p class="fait" role="status">Votre choix est enregistré pour la convention '
              f"{escape(done)} : elle ne recevra plus vos informations.</p>" if done else "")
    sign_out = ('<form method="post" action="/journal/deconnexion">'
                f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
                '<button type="submit">Se déconnecter</button></form>')
    body = (notice + "<h2>Vos choix</h2>" + _choices(choices, csrf)
            + "<h2>Qui recevrait quoi aujourd'hui</h2>" + _upcoming(receivers)
            + "<h2>Ce que le bus a fait</h2>" + _deliveries(found.deliveries)
            + _withheld(found.withheld) + _history(found) + sign_out)
    return page("Mon journal de circulation des données", body, dev_sign_in)
