from __future__ import annotations

from pathlib import Path

import pytest

from policies import PolicyError, default_policy_path, load_policy, parse_policy


def issues(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    return [(i.line, i.message) for i in info.value.issues]


def test_bundled_default_policy_is_valid() -> None:
    policy = load_policy(default_policy_path())
    assert policy.ref == "default@3"
    assert {r.action.value for r in policy.rules} == {"block", "tag", "throttle"}


def test_errors_name_line_and_column() -> None:
    text = (
        'name: x\nversion: "1"\ndefault: allow\nrules:\n  - id: r1\n    when:\n'
        "      intent: sarcastic\n    action: tag\n"
    )
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    assert str(info.value).startswith("p.yaml:7:15: unknown intent 'sarcastic'")


def test_every_problem_is_reported_at_once() -> None:
    text = """name: x
version: "1"
default: maybe
colour: red
rules:
  - id: r1
    action: nuke
  - id: r1
    action: tag
    when:
      confidence: {gte: 1.5}
  - action: tag
"""
    found = issues(text)
    messages = " | ".join(m for _, m in found)
    assert (3, "unknown action 'maybe' (allowed: allow, throttle, tag, block)") in found
    assert any(line == 4 and "unknown key 'colour'" in m for line, m in found)
    assert any(line == 7 and "unknown action 'nuke'" in m for line, m in found)
    assert any(line == 11 and "within [0, 1]" in m for line, m in found)
    assert any(line == 12 and "missing 'id'" in m for line, m in found), messages


def test_duplicate_rule_ids_are_refused() -> None:
    text = 'name: x\nversion: "1"\ndefault: allow\nrules:\n  - {id: a, action: tag}\n  - {id: a, action: block}\n'
    assert (6, "duplicate rule id 'a'") in issues(text)


def test_invalid_yaml_points_at_the_syntax_error() -> None:
    found = issues("name: x\nrules: [\n  - a\n")
    assert found[0][1].startswith("invalid YAML")
    assert found[0][0] >= 2


def test_missing_required_keys() -> None:
    found = issues("name: x\n")
    assert {m for _, m in found} >= {
        "missing required key 'version'",
        "missing required key 'default'",
        "missing required key 'rules'",
    }


def test_empty_file() -> None:
    assert issues("") == [(1, "empty policy file")]


def test_load_policy_from_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: mine\nversion: 2\ndefault: tag\nrules: []\n", encoding="utf-8")
    policy = load_policy(path)
    assert (policy.name, policy.version, policy.default_action.value, policy.rules) == ("mine", "2", "tag", ())
