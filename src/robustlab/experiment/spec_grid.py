"""Parsing the `attacks:`, `defenses:` and `transfer:` sections of an experiment file: every
attack built at every eps of its grid and every defense's parameters checked before anything
trains."""

from __future__ import annotations

from collections import Counter
from typing import Any

from robustlab.attacks.registry import get_attack_class
from robustlab.core.errors import ConfigError
from robustlab.evaluate.runner import AttackSpec
from robustlab.experiment.limits import plain_name, short_repr
from robustlab.experiment.spec_parsing import eps_list, fail, known_keys, model_ids, named_entry, resolve_models
from robustlab.experiment.spec_parts import DefenseSpec, GridAttack, ModelSpec, TransferSpec


def check_defense(where: str, name: str, args: dict[str, Any]) -> str:
    """Validate a defense entry before anything is trained; its canonical name (ConfigError
    naming the problem otherwise)."""
    from robustlab.defenses import check_defense_params

    try:
        return check_defense_params(name, **args)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_attacks(doc: Any, default_eps: tuple[float, ...], models: tuple[ModelSpec, ...]) -> tuple[GridAttack, ...]:
    if not isinstance(doc, list) or not doc:
        raise ConfigError("an experiment needs at least one attack (attacks: a list)")
    unnamed = Counter(a if isinstance(a, str) else str(a.get("name")) for a in doc
                      if isinstance(a, str) or (isinstance(a, dict) and "id" not in a))
    out = []
    for i, item in enumerate(doc):
        where = f"attacks[{i}]"
        a = named_entry(where, item)
        params = {k: v for k, v in a.items() if k not in ("name", "id", "eps", "models", "defenses")}
        only = model_ids(where, a.get("models"), models)
        on = a.get("defenses")
        if on is not None and (not isinstance(on, list) or not on):
            fail(where, "defenses must be a non-empty list of defense ids ('none' = undefended)")
        spec = AttackSpec(str(a["name"]), params)
        aid = plain_name(a.get("id") or (a["name"] if unnamed[a["name"]] == 1 else f"{a['name']}-{i + 1}"),
                         f"{where}: id")
        eps = () if get_attack_class(spec.name).minimum_norm else (
            eps_list(where, a["eps"]) if "eps" in a else default_eps)
        if "eps" in a and get_attack_class(spec.name).minimum_norm:
            fail(where, f"{spec.name} is a minimum-norm attack: it takes no eps grid")
        for e in eps or (None,):  # every parameter and eps checked now, not after training
            try:
                spec.build(0.0 if e is None else e)
            except ConfigError as exc:
                fail(where, str(exc))
        out.append(GridAttack(aid, spec, eps, only, None if on is None else tuple(map(str, on))))
    ids = [a.id for a in out]
    if len(set(ids)) != len(ids):
        fail("attacks", f"attack ids must be unique, got {ids}")
    return tuple(out)


def parse_defenses(doc: Any, models: tuple[ModelSpec, ...]) -> tuple[DefenseSpec, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise ConfigError("defenses must be a list")
    out = []
    for i, item in enumerate(doc):
        where = f"defenses[{i}]"
        d = named_entry(where, item)
        if str(d["name"]) == "none":
            continue
        only = model_ids(where, d.get("models"), models)
        args = {k: v for k, v in d.items() if k not in ("name", "id", "models", "non_adaptive")}
        name = check_defense(where, str(d["name"]), args)
        non_adaptive = d.get("non_adaptive", False)
        if not isinstance(non_adaptive, bool):
            fail(where, f"non_adaptive must be true or false, got {short_repr(non_adaptive)}")
        out.append(DefenseSpec(plain_name(d.get("id") or d["name"], f"{where}: id"), name, args, only, non_adaptive))
    ids = [d.id for d in out]
    if len(set(ids)) != len(ids) or "none" in ids:
        fail("defenses", f"defense ids must be unique and not 'none', got {ids}")
    return tuple(out)


def parse_transfer(doc: Any, models, attacks) -> TransferSpec | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ConfigError("transfer must be a mapping {sources: [...], targets: [...]}")
    known_keys("transfer", doc, {"sources", "targets", "attacks", "eps"})
    resolved = {}
    for part in ("sources", "targets"):
        names = doc.get(part)
        if not isinstance(names, list) or not names:
            fail("transfer", f"{part} must be a non-empty list of model ids")
        resolved[part] = tuple(m.id for n in names for m in resolve_models(f"transfer.{part}", str(n), models, None))
    by_id = {a.id: a for a in attacks}
    fixed = [a.id for a in attacks if not a.minimum_norm]
    names = doc.get("attacks", fixed)
    if not isinstance(names, list) or not names:
        fail("transfer", "attacks must be a non-empty list of attack ids")
    for n in names:
        if not isinstance(n, str) or n not in by_id or by_id[n].minimum_norm:
            fail("transfer", f"attack {short_repr(n)} is not a fixed-budget attack of the grid (choose from {fixed})")
    eps = None
    if "eps" in doc:
        eps = eps_list("transfer", doc["eps"])
        for n in names:
            missing = [e for e in eps if e not in by_id[n].eps]
            if missing:
                fail("transfer", f"eps {missing} not in the grid of attack {n!r} ({list(by_id[n].eps)}): "
                      "the diagonal is the white-box cell, so it must be in the grid")
    return TransferSpec(resolved["sources"], resolved["targets"], tuple(map(str, names)), eps)
