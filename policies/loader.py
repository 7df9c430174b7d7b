"""Parse policy YAML into frozen objects, reporting every problem with its line and column.

The YAML node tree (``yaml.compose``) keeps source positions, so validation walks nodes rather than plain
data: a policy owner sees ``policy.yaml:14:12: unknown intent 'sarcastic'`` instead of a stack trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from memeguard.schemas import Emotion, HarmType, Intent, ModerationAction
from policies.model import Condition, ConfidenceRange, Policy, Rule

ENUMS: dict[str, type[StrEnum]] = {"emotion": Emotion, "intent": Intent, "harm_type": HarmType}
TOP_KEYS = {"name", "version", "description", "default", "rules"}
RULE_KEYS = {"id", "action", "when", "description"}
BOUNDS = ("gte", "gt", "lte", "lt")
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
# signal sources that can back a harm type with evidence of their own (``when: evidence: [...]``)
EVIDENCE_SOURCES = frozenset({"kb", "fingerprint", "vlm"})


@dataclass(frozen=True)
class PolicyIssue:
    line: int
    column: int
    message: str


@dataclass
class PolicyError(Exception):
    source: str
    issues: list[PolicyIssue] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(f"{self.source}:{i.line}:{i.column}: {i.message}" for i in self.issues)


class _Issues:
    """Collects problems so one run reports all of them, not just the first."""

    def __init__(self) -> None:
        self.items: list[PolicyIssue] = []

    def add(self, node: Node, message: str) -> None:
        self.items.append(PolicyIssue(node.start_mark.line + 1, node.start_mark.column + 1, message))


def default_policy_path() -> Path:
    return Path(str(resources.files("policies").joinpath("default.yaml")))


def load_policy(path: Path | None = None) -> Policy:
    """Load and validate a policy file (the bundled default when ``path`` is None)."""
    path = path or default_policy_path()
    return parse_policy(path.read_text(encoding="utf-8"), source=str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse policy YAML text; raise ``PolicyError`` listing every issue with line and column."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyError(source, [PolicyIssue(line, col, f"invalid YAML: {exc.problem}")]) from exc
    issues = _Issues()
    policy = _policy(root, issues) if root is not None else None
    if root is None:
        issues.items.append(PolicyIssue(1, 1, "empty policy file"))
    if issues.items or policy is None:
        raise PolicyError(source, issues.items)
    return policy


def _mapping(node: Node, issues: _Issues, allowed: set[str], what: str) -> dict[str, tuple[Node, Node]]:
    if not isinstance(node, MappingNode):
        issues.add(node, f"{what} must be a mapping")
        return {}
    out: dict[str, tuple[Node, Node]] = {}
    for key, value in node.value:
        name = str(key.value)
        if name not in allowed:
            issues.add(key, f"unknown key {name!r} in {what} (allowed: {', '.join(sorted(allowed))})")
        elif name in out:
            issues.add(key, f"duplicate key {name!r} in {what}")
        else:
            out[name] = (key, value)
    return out


def _scalar(node: Node, issues: _Issues, what: str) -> str | None:
    if not isinstance(node, ScalarNode) or node.value == "":
        issues.add(node, f"{what} must be a non-empty scalar")
        return None
    return str(node.value)


def _action(node: Node, issues: _Issues) -> ModerationAction | None:
    value = _scalar(node, issues, "action")
    if value is None:
        return None
    try:
        return ModerationAction(value)
    except ValueError:
        issues.add(node, f"unknown action {value!r} (allowed: {', '.join(a.value for a in ModerationAction)})")
        return None


def _policy(root: Node, issues: _Issues) -> Policy | None:
    top = _mapping(root, issues, TOP_KEYS, "policy")
    for required in ("name", "version", "default", "rules"):
        if required not in top and isinstance(root, MappingNode):
            issues.add(root, f"missing required key {required!r}")
    name = _scalar(top["name"][1], issues, "name") if "name" in top else None
    version = _scalar(top["version"][1], issues, "version") if "version" in top else None
    default = _action(top["default"][1], issues) if "default" in top else None
    rules = _rules(top["rules"][1], issues) if "rules" in top else ()
    description = str(top["description"][1].value) if "description" in top else ""
    if name is None or version is None or default is None:
        return None
    return Policy(name, version, default, rules, description)


def _rules(node: Node, issues: _Issues) -> tuple[Rule, ...]:
    if not isinstance(node, SequenceNode):
        issues.add(node, "rules must be a list")
        return ()
    rules: list[Rule] = []
    seen: set[str] = set()
    for item in node.value:
        rule = _rule(item, issues)
        if rule is not None and rule.id in seen:
            issues.add(item, f"duplicate rule id {rule.id!r}")
        elif rule is not None:
            seen.add(rule.id)
            rules.append(rule)
    return tuple(rules)


def _rule(node: Node, issues: _Issues) -> Rule | None:
    keys = _mapping(node, issues, RULE_KEYS, "rule")
    for required in ("id", "action"):
        if required not in keys and isinstance(node, MappingNode):
            issues.add(node, f"rule is missing {required!r}")
    rule_id = _scalar(keys["id"][1], issues, "rule id") if "id" in keys else None
    if rule_id is not None and not RULE_ID.match(rule_id):
        issues.add(keys["id"][1], f"rule id {rule_id!r} must match {RULE_ID.pattern}")
        rule_id = None
    action = _action(keys["action"][1], issues) if "action" in keys else None
    conditions, confidence = _when(keys["when"][1], issues) if "when" in keys else ((), None)
    description = str(keys["description"][1].value) if "description" in keys else ""
    if rule_id is None or action is None:
        return None
    return Rule(rule_id, action, conditions, confidence, description)


def _when(node: Node, issues: _Issues) -> tuple[tuple[Condition, ...], ConfidenceRange | None]:
    keys = _mapping(node, issues, {*ENUMS, "signal", "evidence", "confidence"}, "when")
    conditions = [
        cond
        for name, (_, value) in keys.items()
        if name != "confidence"
        if (cond := _condition(name, value, issues)) is not None
    ]
    confidence = _confidence(keys["confidence"][1], issues) if "confidence" in keys else None
    return tuple(conditions), confidence


def _condition(name: str, node: Node, issues: _Issues) -> Condition | None:
    negate = False
    if isinstance(node, MappingNode):
        ops = _mapping(node, issues, {"in", "not_in"}, f"{name} condition")
        if len(ops) != 1:
            issues.add(node, f"{name} condition needs exactly one of 'in' or 'not_in'")
            return None
        op, (_, node) = next(iter(ops.items()))
        negate = op == "not_in"
    values = _values(name, node, issues)
    return Condition(name, values, negate) if values else None


def _values(name: str, node: Node, issues: _Issues) -> frozenset[str]:
    items = node.value if isinstance(node, SequenceNode) else [node]
    values: set[str] = set()
    for item in items:
        value = _scalar(item, issues, f"{name} value")
        if value is not None and name in ENUMS and value not in {m.value for m in ENUMS[name]}:
            allowed = ", ".join(m.value for m in ENUMS[name])
            issues.add(item, f"unknown {name} {value!r} (allowed: {allowed})")
        elif value is not None and name == "evidence" and value not in EVIDENCE_SOURCES:
            issues.add(item, f"unknown evidence source {value!r} (allowed: {', '.join(sorted(EVIDENCE_SOURCES))})")
        elif value is not None:
            values.add(value)
    if not items:
        issues.add(node, f"{name} needs at least one value")
    return frozenset(values)


def _confidence(node: Node, issues: _Issues) -> ConfidenceRange | None:
    keys = _mapping(node, issues, set(BOUNDS), "confidence")
    bounds: dict[str, float] = {}
    for name, (_, value) in keys.items():
        try:
            number = float(value.value)
        except (TypeError, ValueError):
            issues.add(value, f"confidence bound {name!r} must be a number")
            continue
        if not 0.0 <= number <= 1.0:
            issues.add(value, f"confidence bound {name!r} must be within [0, 1], got {number}")
            continue
        bounds[name] = number
    if not keys and isinstance(node, MappingNode):
        issues.add(node, "confidence needs at least one of gte, gt, lte, lt")
    return ConfidenceRange(**bounds) if bounds else None
