"""Contract files written carelessly or with hostile intent: refused with file and place, fast.

Each case used to validate, crash with a traceback, or hang; each must now be one problem (or
more) naming the file and the key or line, never quoting a value that could be personal.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalog import Catalog
from schemas.identifiers import complete_nir
from schemas.nir_detection import contains_nir
from schemas.projection import ProjectionError, delivery_namespace
from streams.state import contract
from streams.state.contract import duration_ms
from streams.state.contract_files import ContractProblem, validate_paths
from tests import hostile_inputs

CATALOG = Catalog.load()
NIR = complete_nir("1841276451089")
DAY = 86_400_000

LYON: dict[str, Any] = {
    "id": "lyon-cantine-2026",
    "subscriber": "ville-de-lyon",
    "subscriber_siret": "21690123100011",
    "purpose": "Tarification sociale de la restauration scolaire",
    "legal_basis": "CRPA art. L114-8",
    "datasets": {"quotient_familial": ["quotient_familial", "annee", "mois"]},
    "consent": "opt_in",
    "population": "enrolled",
    "retention": "P90D",
    "valid_from": "2026-01-01",
}
LYON_TEXT = yaml.safe_dump(LYON, sort_keys=False, allow_unicode=True)


def _check(folder: Path, text: str | bytes, name: str = "c.yaml",
           ) -> tuple[list[Any], list[ContractProblem]]:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return validate_paths([path], CATALOG)


def _refused(folder: Path, text: str | bytes) -> list[ContractProblem]:
    contracts, problems = _check(folder, text)
    assert contracts == []
    assert problems, "expected at least one problem"
    assert all(p.file == str(folder / "c.yaml") for p in problems)
    return problems


def _with(key: str, value: Any) -> str:
    return yaml.safe_dump({**LYON, key: value}, sort_keys=False, allow_unicode=True)


# --- values that end with a newline ----------------------------------------------------------

@pytest.mark.parametrize("key", ["id", "subscriber", "retention"])
def test_a_trailing_newline_is_refused(tmp_path: Path, key: str) -> None:
    problems = _refused(tmp_path, _with(key, f"{LYON[key]}\n"))
    assert [p.key for p in problems] == [key]


def test_a_duration_with_a_trailing_newline_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="duration"):
        duration_ms("P90D\n")


def test_a_namespace_part_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ProjectionError):
        delivery_namespace("lyon-cantine", "quotient_familial\n")


# --- YAML that used to crash or hang ---------------------------------------------------------

ALIAS_BOMB = (
    'purpose: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    problems = _refused(tmp_path, ALIAS_BOMB)
    assert time.monotonic() - started < 2
    assert any("alias" in p.reason or "anchor" in p.reason for p in problems)
    assert problems[0].line == 1


@pytest.mark.parametrize(("text", "line"), [
    (LYON_TEXT.replace("purpose: ", "purpose: &p "), 4),
    (LYON_TEXT + "extra: *x\n", None),
])
def test_anchors_and_aliases_are_refused(tmp_path: Path, text: str, line: int | None) -> None:
    problems = _refused(tmp_path, text)
    assert any("anchor" in p.reason or "alias" in p.reason for p in problems), problems
    if line is not None:
        assert problems[0].line == line


def test_explicit_tags_are_refused(tmp_path: Path) -> None:
    problems = _refused(tmp_path, LYON_TEXT.replace("purpose: ", "purpose: !!binary "))
    assert [("tag" in p.reason, p.line) for p in problems] == [(True, 4)]


@pytest.mark.parametrize(("text", "key"), [
    ("? [a, b]\n: x\n" + LYON_TEXT, ""),
    (LYON_TEXT.replace("  quotient_familial:", "  [quotient_familial, x]:"), "datasets"),
    (LYON_TEXT + "2026: x\n", ""),
    (LYON_TEXT + "null: x\n", ""),
])
def test_keys_that_are_not_strings_are_refused(tmp_path: Path, text: str, key: str) -> None:
    problems = _refused(tmp_path, text)
    assert any("key" in p.reason and "string" in p.reason and p.key == key and p.line
               for p in problems), problems


def test_a_duplicate_key_inside_datasets_is_refused(tmp_path: Path) -> None:
    text = LYON_TEXT.replace("  quotient_familial:",
                             "  quotient_familial: [annee]\n  quotient_familial:")
    problems = _refused(tmp_path, text)
    assert any(p.key == "datasets.quotient_familial" and "duplicate key" in p.reason
               for p in problems), problems


def test_duplicate_mappings_in_a_field_list_are_refused(tmp_path: Path) -> None:
    problems = _refused(tmp_path, _with("datasets", {"quotient_familial": [{"a": 1}, {"a": 1}]}))
    assert {p.key for p in problems} == {"datasets.quotient_familial[0]",
                                         "datasets.quotient_familial[1]"}


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_nesting_is_refused(tmp_path: Path, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    text = LYON_TEXT.replace("purpose: Tarification sociale de la restauration scolaire",
                             "purpose: " + opening * 5000 + "x" + closing * 5000)
    problems = _refused(tmp_path, text)
    assert any("nest" in p.reason and p.line == 4 for p in problems), problems


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\ufffe"],
                         ids=["nul", "escape", "noncharacter"])
def test_a_character_yaml_does_not_allow_is_refused_by_line(tmp_path: Path,
                                                            character: str) -> None:
    """PyYAML refuses such a character before it parses anything, with an error of its own."""
    problems = _refused(tmp_path, LYON_TEXT.replace("CRPA", f"CRPA{character}"))
    assert [(p.key, p.line) for p in problems] == [("", 5)]
    assert "character" in problems[0].reason


def test_a_file_too_large_is_refused_without_parsing(tmp_path: Path) -> None:
    text = LYON_TEXT + "# " + "x" * 2_000_000 + "\n"
    problems = _refused(tmp_path, text)
    assert [("too large" in p.reason, p.key) for p in problems] == [(True, "")]


# --- upper bounds ------------------------------------------------------------------------------

@pytest.mark.parametrize("retention", ["P10Y", "P120M", "P3650D"])
def test_retention_up_to_the_bound_is_accepted(retention: str) -> None:
    assert duration_ms(retention) <= contract.MAX_RETENTION.total_seconds() * 1000


@pytest.mark.parametrize("retention", ["P11Y", "P3651D", "P1000W", "PT100000H", "P90Y"])
def test_retention_beyond_the_bound_is_refused(tmp_path: Path, retention: str) -> None:
    problems = _refused(tmp_path, _with("retention", retention))
    assert [(p.key, "at most" in p.reason) for p in problems] == [("retention", True)]


@pytest.mark.parametrize(("key", "length"), [("purpose", 301), ("legal_basis", 1001)])
def test_text_beyond_its_bound_is_refused(tmp_path: Path, key: str, length: int) -> None:
    problems = _refused(tmp_path, _with(key, "x" * length))
    assert [(p.key, "at most" in p.reason) for p in problems] == [(key, True)]
    _, fine = _check(tmp_path, _with(key, "x" * (length - 1)))
    assert fine == []


# --- refusals never quote the value ------------------------------------------------------------

@pytest.mark.parametrize(("key", "value"), [
    ("id", f"dossier_{NIR}"),
    ("subscriber", f"Dossier {NIR}"),
    ("retention", NIR),
    ("retention", f"P{NIR}D"),
    ("valid_from", NIR),
    ("valid_until", f"{NIR}"),
    ("consent", NIR),
    ("population", NIR),
    ("subscriber_siret", NIR),
    ("datasets", {NIR: ["annee"]}),
    ("datasets", {"quotient_familial": [NIR]}),
    ("datasets", {"quotient_familial": [NIR, NIR]}),
    ("datasets", {"attestation_fiscale": ["statut"], NIR: []}),
    ("datasets", NIR),
    ("purpose", ["x", NIR]),
])
def test_a_refusal_never_quotes_the_value(tmp_path: Path, key: str, value: Any) -> None:
    problems = _refused(tmp_path, _with(key, value))
    shown = "\n".join(str(p) for p in problems)
    assert NIR not in shown
    assert NIR[:13] not in shown
    assert all(p.key.split(".")[0].split("[")[0] in (key, "consent") for p in problems), shown


@pytest.mark.parametrize("text", [f"id: !{NIR}!x y\n", f'id: "\\q{NIR}"\n',
                                  f"id: !{NIR}!\n", f"id: '{NIR}\n"],
                         ids=["tag-handle", "escape", "bare-tag-handle", "unclosed-quote"])
def test_a_yaml_syntax_error_never_quotes_the_file(tmp_path: Path, text: str) -> None:
    """PyYAML's messages quote what they stumbled on: a tag handle may be a whole NIR."""
    problems = _refused(tmp_path, LYON_TEXT + text)
    shown = "\n".join(str(p) for p in problems)
    assert "YAML syntax error" in shown
    assert NIR[:13] not in shown
    assert not contains_nir(shown)


# --- one subscriber id, one organisation --------------------------------------------------------

def test_one_subscriber_bound_to_two_sirets_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(LYON_TEXT, encoding="utf-8")
    other = {**LYON, "id": "lyon-autre", "subscriber_siret": "22690001700014"}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    contracts, problems = validate_paths([tmp_path], CATALOG)
    assert [c.id for c in contracts] == ["lyon-cantine-2026"]
    (problem,) = problems
    assert (Path(problem.file).name, problem.key) == ("b.yaml", "subscriber_siret")
    assert "ville-de-lyon" in problem.reason
    assert str(tmp_path / "a.yaml") in problem.reason
    assert "21690123100011" in problem.reason
    assert "22690001700014" in problem.reason
    assert problem.line is not None


def test_one_subscriber_with_one_siret_in_several_files_is_fine(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(LYON_TEXT, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**LYON, "id": "lyon-autre"}),
                                     encoding="utf-8")
    contracts, problems = validate_paths([tmp_path], CATALOG)
    assert (len(contracts), problems) == (2, [])


# --- any file at all -----------------------------------------------------------------------------

SPACED_NIR = " ".join((NIR[0], NIR[1:3], NIR[3:5], NIR[5:7], NIR[7:10], NIR[10:13], NIR[13:]))
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.dates(),
                    st.text(max_size=20), st.sampled_from([NIR, SPACED_NIR, f"x-{NIR}", "P90D",
                                                           "quotient_familial", "x" * 5000]))
_VALUES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=10), st.integers(), st.sampled_from([NIR])),
                    inner, max_size=4)), max_leaves=10)
_TOKENS = [*"abc:-[]{},&*!?|>'\"#%@` \n\t019.\\", "\n  ", ": ", "- ", "&a ", "*a", "<<: ",
           "!!python/object:os.system ", "!!binary ", f"!{NIR}!x ", "%TAG ! tag:x,2026:\n",
           "---\n", "...\n", "\ufeff", "\x00", "\x1b", NIR, SPACED_NIR, "[" * 50, "{a: " * 30]
_TEXTS = st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)
_FILES = st.one_of(
    st.lists(st.tuples(st.sampled_from([*contract.FILE_KEYS, "revoked", "extra", NIR]), _VALUES),
             min_size=1, max_size=3).map(
        lambda changes: yaml.safe_dump({**LYON, **dict(changes)}, allow_unicode=True).encode()),
    _TEXTS.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.tuples(st.integers(0, len(LYON_TEXT)), _TEXTS).map(
        lambda cut: (LYON_TEXT[:cut[0]] + cut[1] + LYON_TEXT[cut[0]:]).encode()),
    st.binary(max_size=200),
    st.sampled_from([10, 17_000]).map(lambda n: b"purpose:\n" + b"- x\n" * n))
_KNOWN_DATASETS = "|".join(d.id for d in CATALOG.datasets())
_PLACE = re.compile(rf"(?:{'|'.join(contract.FILE_KEYS + contract.RECORD_ONLY_KEYS)})?"
                    rf"(?:\.(?:{_KNOWN_DATASETS})|\[(?:\d+|\?)\])*")
"""How a problem names its place: keys of a contract file and datasets of the catalog by name,
anything else by its position (``streams.state.contract.place_name``)."""


def test_any_file_is_a_contract_or_problems_naming_places_never_values(tmp_path: Path) -> None:
    """Generated files (contracts with values of any type and size, YAML with anchors,
    aliases, tags, directives, deep nesting and control characters, raw bytes, files too
    large): each is a valid contract or a list of problems, each naming this file and a place,
    none repeating a value; never a traceback."""
    path = tmp_path / "c.yaml"

    @settings(max_examples=hostile_inputs.QUOTAS["contract files"], deadline=None,
              database=None)
    @given(content=_FILES)
    def one(content: bytes) -> None:
        hostile_inputs.tried("contract files")
        path.write_bytes(content)
        contracts, problems = validate_paths([path], CATALOG)
        assert bool(contracts) != bool(problems)
        shown = "\n".join(str(p) for p in problems)
        assert not contains_nir(shown)
        assert NIR[:13] not in shown.replace(" ", "")
        for problem in problems:
            assert problem.file == str(path)
            assert _PLACE.fullmatch(problem.key), problem.key
            assert len(problem.reason) < 1000

    with hostile_inputs.at_least("contract files"):
        one()
