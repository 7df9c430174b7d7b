from __future__ import annotations

import subprocess
import sys

import pytest

from memeguard.schemas import Emotion, HarmType, Intent, ModerationAction, Signal, Verdict
from policies import Decision, evaluate, load_policy, parse_policy


def verdict(
    harm: str = "none",
    intent: str = "neutral",
    confidence: float = 0.5,
    emotion: str = "neutral",
    signals: tuple[str, ...] = (),
    backed_by: tuple[str, ...] = (),
) -> Verdict:
    """A verdict with empty signals from ``signals`` and signals from ``backed_by`` that back its harm type."""
    return Verdict(
        emotion=Emotion(emotion),
        intent=Intent(intent),
        harm_type=HarmType(harm),
        confidence=confidence,
        explanation="测试",
        analyzer="test",
        analyzer_version="1",
        signals=[Signal(source=s) for s in signals] + [Signal(source=s, backs=["harm_type"]) for s in backed_by],
    )


POLICY = """
name: t
version: "7"
default: allow
rules:
  - id: first
    when: {harm_type: targeted_harm, confidence: {gte: 0.8}}
    action: block
  - id: second
    when: {harm_type: {in: [targeted_harm, general_offense]}}
    action: tag
  - id: from-fingerprint
    when: {signal: fingerprint, harm_type: {not_in: [none]}}
    action: block
  - id: sarcasm-band
    when: {intent: sarcasm, confidence: {gt: 0.3, lt: 0.6}}
    action: throttle
"""


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return parse_policy(POLICY)


def test_first_matching_rule_decides_and_records_policy_version(policy) -> None:  # type: ignore[no-untyped-def]
    decision = evaluate(policy, verdict("targeted_harm", confidence=0.9))
    assert decision == Decision(ModerationAction.BLOCK, "t", "7", "first", decision.reason)
    assert "拦截" in decision.reason


def test_threshold_boundaries(policy) -> None:  # type: ignore[no-untyped-def]
    assert evaluate(policy, verdict("targeted_harm", confidence=0.8)).rule_id == "first"  # gte is inclusive
    assert evaluate(policy, verdict("targeted_harm", confidence=0.7999)).rule_id == "second"
    assert evaluate(policy, verdict(intent="sarcasm", confidence=0.3)).rule_id == "default"  # gt exclusive
    assert evaluate(policy, verdict(intent="sarcasm", confidence=0.31)).rule_id == "sarcasm-band"
    assert evaluate(policy, verdict(intent="sarcasm", confidence=0.6)).rule_id == "default"  # lt exclusive


def test_default_applies_when_nothing_matches(policy) -> None:  # type: ignore[no-untyped-def]
    decision = evaluate(policy, verdict())
    assert (decision.action, decision.rule_id) == (ModerationAction.ALLOW, "default")


def test_signal_and_not_in_conditions(policy) -> None:  # type: ignore[no-untyped-def]
    hit = verdict("sexual_innuendo", signals=("fingerprint",))
    assert evaluate(policy, hit).rule_id == "from-fingerprint"
    assert evaluate(policy, verdict("sexual_innuendo", signals=("kb",))).rule_id == "default"


def test_decisions_are_frozen(policy) -> None:  # type: ignore[no-untyped-def]
    decision = evaluate(policy, verdict())
    with pytest.raises(AttributeError):
        decision.action = ModerationAction.BLOCK  # type: ignore[misc]


@pytest.mark.parametrize(
    ("harm", "intent", "confidence", "action"),
    [
        ("targeted_harm", "explicit_attack", 0.95, "block"),  # high risk, backed by evidence (below)
        ("sexual_innuendo", "provocation", 0.9, "block"),
        ("general_offense", "explicit_attack", 0.9, "block"),
        ("general_offense", "implicit_attack", 0.9, "tag"),  # medium: harmful but not explicit
        ("targeted_harm", "implicit_attack", 0.6, "tag"),
        ("dispirited_culture", "venting", 0.75, "throttle"),  # low risk
        ("general_offense", "sarcasm", 0.3, "throttle"),  # low-confidence harm
        ("none", "provocation", 0.7, "throttle"),  # hostile tone without harm type
        ("none", "sarcasm", 0.9, "allow"),
        ("none", "humor", 0.6, "allow"),
        ("none", "counter_speech", 0.9, "allow"),  # arguing against discrimination
    ],
)
def test_default_policy_risk_tiers(harm: str, intent: str, confidence: float, action: str) -> None:
    decision = evaluate(load_policy(), verdict(harm, intent, confidence, backed_by=("kb",)))
    assert decision.action.value == action
    assert decision.policy_name == "default"


@pytest.mark.parametrize("backed_by", [("kb",), ("fingerprint",), ("vlm",)])
def test_the_default_policy_blocks_only_with_evidence_beyond_the_classifier(backed_by: tuple[str, ...]) -> None:
    policy = load_policy()
    alone = evaluate(policy, verdict("targeted_harm", "explicit_attack", 0.97, signals=("classifier", "kb")))
    assert (alone.action.value, alone.rule_id) == ("tag", "review.classifier-only")
    backed = evaluate(
        policy, verdict("targeted_harm", "explicit_attack", 0.97, signals=("classifier",), backed_by=backed_by)
    )
    assert (backed.action.value, backed.rule_id) == ("block", "high.targeted-or-sexual")
    offense = verdict("general_offense", "explicit_attack", 0.9, backed_by=backed_by)
    assert evaluate(policy, offense).action.value == "block"


def test_the_default_policy_sends_novel_text_to_review_before_any_automatic_action() -> None:
    policy = load_policy()
    for harm, intent in (("targeted_harm", "explicit_attack"), ("none", "neutral"), ("dispirited_culture", "venting")):
        decision = evaluate(policy, verdict(harm, intent, 0.95, signals=("novelty",), backed_by=("kb",)))
        assert (decision.action.value, decision.rule_id) == ("tag", "review.novel")


def test_evidence_conditions_name_known_sources() -> None:
    from policies import PolicyError

    with pytest.raises(PolicyError, match="unknown evidence source 'classifier'"):
        parse_policy(
            "name: x\nversion: '1'\ndefault: allow\nrules:\n  - id: a\n    when: {evidence: classifier}\n"
            "    action: block\n"
        )


def test_policies_package_is_pure() -> None:
    """The engine must import without SQLAlchemy, Celery or Redis (osprey's engine/worker split)."""
    code = (
        "import sys, policies; policies.evaluate(policies.load_policy(), None) if False else None;"
        "bad = [m for m in ('sqlalchemy', 'celery', 'redis', 'kombu') if m in sys.modules];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"policies imported {result.stdout.strip()}"
