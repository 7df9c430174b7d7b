"""Evaluation: a pure function from (policy, verdict) to a frozen decision."""

from __future__ import annotations

from memeguard.schemas import Decision, ModerationAction, Verdict, label_zh
from policies.model import Policy

DEFAULT_RULE_ID = "default"


def evaluate(policy: Policy, verdict: Verdict) -> Decision:
    """The first matching rule decides; when none matches, the policy's default action applies."""
    for rule in policy.rules:
        if rule.matches(verdict):
            return _decision(policy, rule.id, rule.action, rule.description)
    return _decision(policy, DEFAULT_RULE_ID, policy.default_action, "no rule matched")


def _decision(policy: Policy, rule_id: str, action: ModerationAction, why: str) -> Decision:
    reason = f"{label_zh(action)}（规则 {rule_id}：{why}）" if why else f"{label_zh(action)}（规则 {rule_id}）"
    return Decision(action, policy.name, policy.version, rule_id, reason)
