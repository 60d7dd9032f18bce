"""Contract files: reading an operator's YAML and reporting every problem in it at once.

An operator fixing a contract wants the whole list, each problem with its file, line, key and
reason, not the first error of a parser: duplicate keys (YAML would silently keep the last),
unreadable files, wrong types, unknown datasets or fields, repeated ids across files, one
subscriber id bound to two organisations. Nothing here touches Kafka, so
``circulation contracts validate`` runs anywhere.

A contract file is small, flat YAML, and the reader accepts nothing more: files up to
:data:`MAX_FILE_BYTES`, nesting up to :data:`MAX_DEPTH`, string keys only, no anchors, aliases
or explicit tags. Those YAML features are how a file of a few hundred bytes expands into
gigabytes or builds objects the model was never meant to see; a contract needs none of them.
Problems name places, never values (:func:`streams.state.contract.place_name`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from schemas.catalog import Catalog
from schemas.nir_detection import KEY_MARKER
from streams.state.contract import (
    FILE_KEYS,
    RECORD_ONLY_KEYS,
    YAML_SUFFIXES,
    Contract,
    Place,
    Problem,
    catalog_problems,
    nir_problems,
    place_name,
    shape_problems,
)
from streams.state.subscribers import SubscriberBindings

MAX_FILE_BYTES = 64 * 1024
"""A contract file's largest size: a contract takes a few hundred bytes, with comments a few
thousand; anything far larger is not a contract and is refused before it is parsed."""
MAX_DEPTH = 8
"""The deepest nesting of collections accepted: a contract nests three levels (the contract,
its datasets, a field list); parsing deeper input recurses once per level."""
_STR_TAG = "tag:yaml.org,2002:str"
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?")
"""A quoted part of a PyYAML message (Python's repr of the file's text), to its end if open."""
_NOT_A_STRING = "a key must be a string"


def _place(path: str) -> Place:
    """A dotted path of the NIR scan as a place: list items by number; a key holding the NIR
    (the scan's marker) is told by its parent, since the key itself is never shown."""
    parts = path.split(".")
    if parts[-1] == KEY_MARKER:
        parts.pop()
    return tuple(int(part) if part.isdigit() else part for part in parts if part)


@dataclass(frozen=True)
class ContractProblem:
    """One problem in one contract file: where it is and what is wrong."""

    file: str
    key: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '(file)'}: {self.reason}"


class _Refused(yaml.MarkedYAMLError):
    """YAML a contract file may not use (an anchor, an alias, a tag, too deep a nesting)."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what a contract never needs while it composes the file:
    nothing is built from an anchor, an alias or a tag, and no nesting exceeds the bound."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(problem="anchors and aliases are not allowed in a contract file",
                           problem_mark=event.start_mark)
        if getattr(event, "tag", None) is not None:
            raise _Refused(problem="explicit tags are not allowed in a contract file",
                           problem_mark=event.start_mark)
        nests = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if nests and self._depth >= MAX_DEPTH:
            raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels",
                           problem_mark=event.start_mark)
        self._depth += nests
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= nests


@dataclass
class _Layout:
    """What the composed tree says before anything is built: the line of every place, and the
    keys that are not strings or appear twice in one mapping."""

    lines: dict[Place, int]
    problems: list[tuple[Place, str, int]]

    @classmethod
    def of(cls, node: yaml.Node) -> _Layout:
        layout = cls({}, [])
        layout._walk(node, ())
        return layout

    def _walk(self, node: yaml.Node, place: Place) -> None:
        if isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                self.lines.setdefault((*place, position), item.start_mark.line + 1)
                self._walk(item, (*place, position))
        elif isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR_TAG):
                    self.problems.append((place, _NOT_A_STRING, line))
                    continue
                key = str(key_node.value)
                if key in seen:
                    self.problems.append(((*place, key),
                                          "duplicate key (YAML would keep only the last)", line))
                seen.add(key)
                self.lines.setdefault((*place, key), line)
                self._walk(value_node, (*place, key))


def _read(path: Path) -> str | ContractProblem:
    """The file's text, or why it cannot be read (too large, not UTF-8, not there)."""
    name = str(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return ContractProblem(name, "", f"file too large: a contract file holds at most "
                                             f"{MAX_FILE_BYTES // 1024} KiB")
        return data.decode("utf-8")
    except OSError as exc:
        return ContractProblem(name, "", f"cannot read: {exc.strerror or type(exc).__name__}")
    except UnicodeDecodeError as exc:
        return ContractProblem(name, "", f"not UTF-8 text (byte {exc.start})")


def load_file(path: Path, known_datasets: Collection[str] = (),
              ) -> tuple[Any, dict[Place, int], list[ContractProblem]]:
    """Parse one YAML file: (document, place → line, problems). Never raises for bad content;
    the document is None when the file cannot be read as a contract at all. Places name the
    datasets in ``known_datasets``, any other key by its position."""
    name = str(path)
    text = _read(path)
    if isinstance(text, ContractProblem):
        return None, {}, [text]
    try:
        loader = _Loader(text)  # PyYAML checks every character here, before parsing
    except yaml.reader.ReaderError as exc:
        return None, {}, [ContractProblem(name, "", "a character YAML does not allow (a "
                                          "control character or a non-character)",
                                          text.count("\n", 0, exc.position) + 1)]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        layout = _Layout.of(node)
        buildable = not any(reason == _NOT_A_STRING for _, reason, _ in layout.problems)
        document = loader.construct_document(node) if buildable else None
        return document, layout.lines, [
            ContractProblem(name, place_name(place, document, known_datasets), reason, line)
            for place, reason, line in layout.problems]
    except _Refused as exc:
        return None, {}, [ContractProblem(name, "", str(exc.problem), _mark_line(exc))]
    except yaml.MarkedYAMLError as exc:
        reason = f"YAML syntax error: {_unquoted(exc.problem or exc.context)}"
        return None, {}, [ContractProblem(name, "", reason, _mark_line(exc))]
    except yaml.YAMLError as exc:
        return None, {}, [ContractProblem(name, "", f"YAML error: {type(exc).__name__}")]
    finally:
        loader.dispose()


def _unquoted(message: str | None) -> str:
    """A PyYAML message without what it quotes of the file (a tag handle, a character): the
    file's own text may be anything, a NIR included."""
    return _QUOTED.sub("…", message or "")


def _mark_line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark else None


def check_document(document: Any, file: str, catalog: Catalog,
                   lines: Mapping[Place, int] | None = None,
                   ) -> tuple[Contract | None, list[ContractProblem]]:
    """Validate one parsed contract document; every problem found, not just the first."""
    lines = lines or {}
    known = [d.id for d in catalog.datasets()]

    def problem(place: Place, reason: str) -> ContractProblem:
        return ContractProblem(file, place_name(place, document, known), reason,
                               _line_of(place, lines))

    if document is None:
        return None, [problem((), "empty file: expected one contract")]
    if not isinstance(document, dict):
        return None, [problem((), f"a contract is a mapping of keys, got "
                                  f"{type(document).__name__}")]
    if found := nir_problems(document):  # first: the other checks may quote values
        return None, [problem(_place(key), reason) for key, reason in found]
    problems = [problem((key,), "set by `circulation contracts revoke`, not in a contract file")
                for key in RECORD_ONLY_KEYS if key in document]
    fields = {k: v for k, v in document.items() if k not in RECORD_ONLY_KEYS}
    contract = None
    try:
        contract = Contract.model_validate(fields)
    except PydanticValidationError as exc:
        problems += [problem(*_pydantic_problem(error))
                     for error in exc.errors(include_input=False, include_url=False)
                     if not _is_shape_error(error)]
    datasets = fields.get("datasets")
    problems += [problem(place, reason) for place, reason in
                 shape_problems(datasets)
                 + catalog_problems(datasets, catalog, fields.get("consent"))]
    problems.sort(key=lambda p: p.line if p.line is not None else 1 << 30)
    return (contract if not problems else None), problems


def _line_of(place: Place, lines: Mapping[Place, int]) -> int | None:
    """The line of ``place`` or of its closest enclosing place."""
    while place:
        if place in lines:
            return lines[place]
        place = place[:-1]
    return None


def _is_shape_error(error: Mapping[str, Any]) -> bool:
    """The model's own dataset-shape error, reported place by place by :func:`shape_problems`."""
    return tuple(error["loc"]) == ("datasets",) and error["type"] == "value_error"


def _pydantic_problem(error: Mapping[str, Any]) -> Problem:
    """(place, reason) from one pydantic error (read without its input), in operators' words."""
    place: Place = tuple(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return place, "missing key"
    if kind == "extra_forbidden":
        return place, f"unknown key (allowed: {', '.join(FILE_KEYS)})"
    if kind == "value_error":
        return place, str(error["ctx"]["error"])
    return place, str(error["msg"])


def contract_files(paths: Iterable[Path]) -> tuple[list[Path], list[ContractProblem]]:
    """The YAML files named by ``paths``: files as given, folders' ``*.yaml``/``*.yml``."""
    files: dict[Path, None] = {}
    problems = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())
            if not found:
                problems.append(ContractProblem(str(path), "", "folder holds no .yaml file"))
            files.update((p, None) for p in found)
        elif path.is_file():
            files[path] = None
        else:
            problems.append(ContractProblem(str(path), "", "no such file or folder"))
    unique = {p.resolve(): p for p in reversed(files)}
    return list(reversed(unique.values())), problems


def validate_paths(paths: Iterable[Path], catalog: Catalog,
                   ) -> tuple[list[Contract], list[ContractProblem]]:
    """Check every contract file under ``paths``; (valid contracts, every problem found).

    Ids must be unique across everything checked together, and one subscriber id must name
    one organisation (one SIRET); no Kafka, no registry involved.
    """
    files, problems = contract_files(paths)
    known = [d.id for d in catalog.datasets()]
    contracts: list[Contract] = []
    first_file: dict[str, str] = {}
    bindings = SubscriberBindings()
    for file in files:
        document, lines, found = load_file(file, known)
        contract, more = (None, []) if document is None and found else check_document(
            document, str(file), catalog, lines)
        problems += found + more
        if contract is None or found:
            continue
        if contract.id in first_file:
            problems.append(ContractProblem(str(file), "id", f"duplicate id {contract.id!r} (also "
                                            f"in {first_file[contract.id]})", lines.get(("id",))))
            continue
        first_file[contract.id] = str(file)
        conflict = bindings.bind(contract, str(file))
        if conflict is not None:
            problems.append(ContractProblem(str(file), "subscriber_siret", conflict,
                                            lines.get(("subscriber_siret",))))
            continue
        contracts.append(contract)
    return contracts, problems
