"""A contract's optional ``delivery`` section: the webhook endpoint and the name of the variable
holding its secret, never the secret; refusals name the key, never the value."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml

from schemas.catalog import Catalog
from schemas.codec import encode, from_json, to_json
from streams.state.contract import Contract
from streams.state.contract_files import validate_paths

CATALOG = Catalog.load()
LYON: dict[str, Any] = {
    "id": "lyon-cantine-2026", "subscriber": "ville-de-lyon",
    "subscriber_siret": "21690123100011",
    "purpose": "Tarification sociale de la restauration scolaire",
    "legal_basis": "CRPA art. L114-8",
    "datasets": {"quotient_familial": ["quotient_familial", "annee", "mois"]},
    "consent": "opt_in", "population": "enrolled", "retention": "P90D",
    "valid_from": "2026-01-01",
}
WEBHOOK = {"url": "https://api.lyon.example/circulation", "secret_env": "LYON_WEBHOOK_SECRET"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _problems(tmp_path: Path, webhook: Any) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**LYON, "delivery": {"webhook": webhook}}))
    contracts, problems = validate_paths([path], CATALOG)
    assert contracts == []
    return [f"{p.key}: {p.reason}" for p in problems]


def test_a_contract_file_may_name_a_webhook(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**LYON, "delivery": {"webhook": WEBHOOK}}))
    (contract,), problems = validate_paths([path], CATALOG)
    assert problems == []
    assert contract.delivery is not None
    assert contract.delivery.webhook is not None
    assert contract.delivery.webhook.secret_env == "LYON_WEBHOOK_SECRET"
    assert contract.to_file()["delivery"] == {"webhook": WEBHOOK}


def test_a_contract_without_delivery_is_written_back_without_it() -> None:
    contract = Contract.checked(LYON, CATALOG)
    assert contract.delivery is None
    assert "delivery" not in contract.to_file()


@pytest.mark.parametrize("secret_env", [SECRET, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "lyon secret",
                                        "LYON_SECRET=abc", ""])
def test_a_secret_in_the_file_is_refused_by_its_key(tmp_path: Path, secret_env: str) -> None:
    problems = _problems(tmp_path, {**WEBHOOK, "secret_env": secret_env})
    assert len(problems) == 1
    assert problems[0].startswith("delivery.webhook.secret_env: ")
    assert "environment variable" in problems[0]
    if secret_env:
        assert secret_env not in problems[0]


@pytest.mark.parametrize(("url", "reason"), [
    ("https://lyon:hunter2@api.lyon.example/hook", "credentials"),
    ("ftp://api.lyon.example/hook", "https://"),
    ("api.lyon.example/hook", "https://"),
])
def test_a_bad_url_is_refused_by_its_key(tmp_path: Path, url: str, reason: str) -> None:
    problems = _problems(tmp_path, {**WEBHOOK, "url": url})
    assert len(problems) == 1
    assert problems[0].startswith("delivery.webhook.url: ")
    assert reason in problems[0]
    assert url not in problems[0]


def test_an_unknown_delivery_key_is_refused(tmp_path: Path) -> None:
    problems = _problems(tmp_path, {**WEBHOOK, "secret": SECRET})
    assert problems
    assert all(SECRET not in p for p in problems)


def test_the_record_carries_the_delivery_and_reads_back() -> None:
    contract = Contract.checked({**LYON, "delivery": {"webhook": WEBHOOK}}, CATALOG)
    schema = CATALOG.bus_record("contract").latest.parsed
    datum = from_json(schema, contract.to_record())
    assert Contract.from_record(to_json(schema, datum)) == contract


def test_a_record_written_before_the_delivery_existed_still_reads() -> None:
    """A version 1 record read with the latest schema: no delivery, the contract unchanged."""
    contract = Contract.checked(LYON, CATALOG)
    record = CATALOG.bus_record("contract")
    old, latest = record.version(1).parsed, record.latest.parsed
    written = {k: v for k, v in contract.to_record().items() if k != "delivery"}
    buffer = io.BytesIO(encode(old, from_json(old, written)))
    datum = fastavro.schemaless_reader(buffer, old, latest)
    assert Contract.from_record(to_json(latest, datum)) == contract
