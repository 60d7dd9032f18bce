"""Contract files: reading an operator's YAML and reporting every problem in it at once.

An operator fixing a contract wants the whole list, each problem with its file, line, key and
reason, not the first error of a parser: duplicate keys (YAML would silently keep the last),
unreadable files, wrong types, unknown datasets or fields, repeated ids across files. Nothing
here touches Kafka, so ``circulation contracts validate`` runs anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from schemas.catalog import Catalog
from streams.state.contract import (
    FILE_KEYS,
    RECORD_ONLY_KEYS,
    YAML_SUFFIXES,
    Contract,
    catalog_problems,
    nir_problems,
    shape_problems,
)


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


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, remembering duplicate keys instead of keeping the last silently."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                self.duplicates.append((key, key_node.start_mark.line + 1))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """Line of every mapping key, as dotted paths (``datasets.quotient_familial``)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}{key_node.value}"
            lines.setdefault(path, key_node.start_mark.line + 1)
            lines.update({k: v for k, v in _key_lines(value_node, f"{path}.").items()
                          if k not in lines})
    return lines


def load_file(path: Path) -> tuple[Any, dict[str, int], list[ContractProblem]]:
    """Parse one YAML file: (document, key → line, problems). Never raises for bad content."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, {}, [ContractProblem(name, "", f"cannot read: {exc}")]
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = f"YAML syntax error: {exc.problem or exc.context}"
        return None, {}, [ContractProblem(name, "", reason, line)]
    except yaml.YAMLError as exc:
        return None, {}, [ContractProblem(name, "", f"YAML error: {exc}")]
    finally:
        loader.dispose()
    lines = _key_lines(node) if node is not None else {}
    problems = [ContractProblem(name, key, "duplicate key (YAML would keep only the last)", line)
                for key, line in loader.duplicates]
    return document, lines, problems


def check_document(document: Any, file: str, catalog: Catalog,
                   lines: Mapping[str, int] | None = None,
                   ) -> tuple[Contract | None, list[ContractProblem]]:
    """Validate one parsed contract document; every problem found, not just the first."""
    lines = lines or {}

    def problem(key: str, reason: str) -> ContractProblem:
        return ContractProblem(file, key, reason, _line_of(key, lines))

    if document is None:
        return None, [problem("", "empty file: expected one contract")]
    if not isinstance(document, dict):
        return None, [problem("", f"a contract is a mapping of keys, got "
                                  f"{type(document).__name__}")]
    if found := nir_problems(document):  # first: the other checks may quote values
        return None, [problem(key, reason) for key, reason in found]
    problems = [problem(str(key), "set by `circulation contracts revoke`, not in a contract file")
                for key in RECORD_ONLY_KEYS if key in document]
    fields = {k: v for k, v in document.items() if k not in RECORD_ONLY_KEYS}
    contract = None
    try:
        contract = Contract.model_validate(fields)
    except PydanticValidationError as exc:
        problems += [problem(*_pydantic_problem(error)) for error in exc.errors()
                     if not _is_shape_error(error)]
    datasets = fields.get("datasets")
    problems += [problem(key, reason) for key, reason in
                 shape_problems(datasets)
                 + catalog_problems(datasets, catalog, fields.get("consent"))]
    problems.sort(key=lambda p: p.line if p.line is not None else 1 << 30)
    return (contract if not problems else None), problems


def _line_of(key: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``key`` or of its closest enclosing key."""
    while key:
        if key in lines:
            return lines[key]
        key = key.rpartition(".")[0]
    return None


def _is_shape_error(error: Mapping[str, Any]) -> bool:
    """The model's own dataset-shape error, reported key by key by :func:`shape_problems`."""
    return tuple(error["loc"]) == ("datasets",) and error["type"] == "value_error"


def _pydantic_problem(error: Mapping[str, Any]) -> tuple[str, str]:
    """(key, reason) from one pydantic error, in operator's words."""
    key = ".".join(str(part) for part in error["loc"][:2])
    key += "".join(f"[{part}]" for part in error["loc"][2:])
    kind = error["type"]
    if kind == "missing":
        return key, "missing key"
    if kind == "extra_forbidden":
        return key, f"unknown key (allowed: {', '.join(FILE_KEYS)})"
    if kind == "value_error":
        return key, str(error["ctx"]["error"])
    given = error.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float | bool) else ""
    return key, f"{error['msg']}{shown}"


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

    Ids must be unique across everything checked together; no Kafka, no registry involved.
    """
    files, problems = contract_files(paths)
    contracts: list[Contract] = []
    first_file: dict[str, str] = {}
    for file in files:
        document, lines, found = load_file(file)
        contract, more = (None, []) if document is None and found else check_document(
            document, str(file), catalog, lines)
        problems += found + more
        identity = document.get("id") if isinstance(document, dict) else None
        if isinstance(identity, str) and identity in first_file:
            problems.append(ContractProblem(str(file), "id", f"duplicate id {identity!r} (also "
                                            f"in {first_file[identity]})", lines.get("id")))
            continue
        if isinstance(identity, str):
            first_file[identity] = str(file)
        if contract is not None and not found:
            contracts.append(contract)
    return contracts, problems
