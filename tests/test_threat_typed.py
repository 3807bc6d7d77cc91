"""The typed threat model is used: norms travel as `Norm` past the parsers, attack kinds are
declared once (`Attack.kind`, `AttackKind`) and the masking rules read them from there."""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from robustlab.attacks import registry
from robustlab.attacks.base import FixedBudgetAttack, RunOutput
from robustlab.attacks.pgd import PGD
from robustlab.core.digest import canonical
from robustlab.core.errors import ConfigError
from robustlab.core.threat import AttackKind, Budget, Norm
from robustlab.evaluate.masking import check_rows
from robustlab.store.results import ResultKey

SRC = Path(__file__).resolve().parents[1] / "src" / "robustlab"
NORM_NAMES = {n.value for n in Norm}
KIND_NAMES = {k.value for k in AttackKind}
PARSERS = {SRC / "core" / "threat.py"}
"""Where a norm may still be a string: the parser itself."""
CLI_OPTIONS = SRC / "cli"
"""The CLI's typer options read the user's text (``--norm l2``): parsed where they are used."""


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p not in PARSERS)


def _is_str(annotation: ast.expr | None) -> bool:
    return isinstance(annotation, ast.Name) and annotation.id == "str" or (
        isinstance(annotation, ast.Constant) and annotation.value == "str")


def test_no_norm_is_annotated_as_a_plain_string() -> None:
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.arg) and node.arg == "norm" and _is_str(node.annotation):
                if not path.is_relative_to(CLI_OPTIONS):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
            elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                  and node.target.id == "norm" and _is_str(node.annotation)):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert found == []


def _string_constants(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {c.value for c in node.elts if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return set()


def _compared_literals(tree: ast.AST) -> set[tuple[str, int]]:
    """(string literal, line) for each literal a comparison reads (``x == "linf"``, ``x in ("l2", "linf")``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for part in [node.left, *node.comparators]:
                out |= {(value, node.lineno) for value in _string_constants(part)}
    return out


def test_no_norm_is_compared_with_a_string_literal() -> None:
    """``norm == "linf"``, ``norm in ("l2", "linf")``: none left (compare with `Norm` members)."""
    found = [f"{path.relative_to(SRC)}:{line}" for path in _sources()
             for value, line in _compared_literals(ast.parse(path.read_text(encoding="utf-8"))) if value in NORM_NAMES]
    assert found == []


@pytest.mark.parametrize("module", ["masking.py", "selftests.py", "defended.py"])
def test_the_masking_rules_declare_no_attack_kind_of_their_own(module: str) -> None:
    """The rules take kinds from `AttackKind` (declared by each attack class): no kind compared with
    a string, no set of kind strings."""
    tree = ast.parse((SRC / "evaluate" / module).read_text(encoding="utf-8"))
    declared = {value for node in ast.walk(tree) if isinstance(node, (ast.Set, ast.Tuple, ast.List))
                for value in _string_constants(node)}
    assert ({value for value, _ in _compared_literals(tree)} | declared) & KIND_NAMES == set()


def test_a_python_call_with_a_string_norm_is_parsed_once_at_the_constructor() -> None:
    attack = PGD(eps=0.5, norm="L2", steps=1)
    assert attack.norm is Norm.L2 and attack.spec()["norm"] == "l2"
    assert attack.budget == Budget(Norm.L2, 0.5)
    with pytest.raises(ConfigError, match="unknown norm 'l3'"):
        PGD(eps=0.5, norm="l3")


def test_result_keys_store_the_canonical_string_and_keep_their_ids() -> None:
    fields = dict(model="m", defense="none", attack='{"name":"pgd"}', eps=0.1, subset="test", norm="linf",
                  model_digest="d", data='{"name":"digits"}', samples="s", batch="64", kind="attack")
    reference = hashlib.sha256(canonical(fields).encode()).hexdigest()[:32]  # the id before Norm
    typed = ResultKey(**{**fields, "norm": Norm.LINF})
    assert typed.norm is Norm.LINF and ResultKey(**fields).norm is Norm.LINF
    assert typed.id == ResultKey(**fields).id == reference
    assert typed.values()[5] == "linf" and type(typed.values()[5]) is str
    assert typed.budget == Budget(Norm.LINF, 0.1) and ResultKey(**{**fields, "eps": None}).budget.minimum_norm


class _Queries(FixedBudgetAttack):
    """A plugin black-box attack: it only declares its kind."""

    name = "plugin-queries"
    kind = AttackKind.BLACK_BOX

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        return RunOutput(x, torch.zeros(len(x), dtype=torch.int64))


@pytest.fixture()
def plugin_attack() -> Iterator[type[_Queries]]:
    registry.register_attack(_Queries)
    try:
        yield _Queries
    finally:
        registry.ATTACKS.remove(_Queries.name)


def test_a_plugin_attack_is_judged_by_the_kind_its_class_declares(plugin_attack: type[_Queries],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"model": "m", "defense": "none", "attack": "pgd", "eps": 0.1, "robust_accuracy": 0.6},
            {"model": "m", "defense": "none", "attack": "plugin-queries", "eps": 0.1, "robust_accuracy": 0.2}]
    flags = {f.check: f for f in check_rows(rows, {"m": 10})}
    assert flags["black-box stronger than white-box"].raised
    assert "plugin-queries" in flags["black-box stronger than white-box"].message
    monkeypatch.setattr(_Queries, "kind", AttackKind.ITERATIVE)  # the same rows, another declared kind
    flags = {f.check: f for f in check_rows(rows, {"m": 10})}
    assert flags["black-box stronger than white-box"].status == "not run"
