"""Policy replay: what a candidate policy would decide on stored verdicts, without writing anything.

Each item is compared with the decision the policy in force last took on it (a reviewer's overturn is not a
change a policy makes); the items reviewers left on another action are counted apart. The CLI (`memeguard
policy replay`) and the console's policy page both read this report.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from jobs import store
from policies import Policy, evaluate


@dataclass
class Transition:
    """Items that went from one action (the policy's last) to another under the candidate."""

    before: str
    after: str
    count: int = 0
    rules: Counter[str] = field(default_factory=Counter)  # the candidate's rule that decided them
    examples: list[uuid.UUID] = field(default_factory=list)

    @property
    def moved(self) -> bool:
        return self.before != self.after


@dataclass
class ReplayReport:
    policy: str
    items: int = 0
    overridden: int = 0
    transitions: dict[tuple[str, str], Transition] = field(default_factory=dict)

    @property
    def moved(self) -> int:
        return sum(t.count for t in self.transitions.values() if t.moved)


def replay(session: Session, policy: Policy, since: datetime | None = None, examples: int = 3) -> ReplayReport:
    """Evaluate ``policy`` on every stored verdict (made at or after ``since``), keeping up to ``examples``
    job ids per transition."""
    report = ReplayReport(policy.ref)
    for stored in store.iter_verdicts(session, since=since):
        before = stored.policy_action.action.value if stored.policy_action else "none"
        decision = evaluate(policy, stored.verdict)
        key = (before, decision.action.value)
        transition = report.transitions.setdefault(key, Transition(*key))
        transition.count += 1
        transition.rules[decision.rule_id] += 1
        if len(transition.examples) < examples:
            transition.examples.append(stored.job_id)
        report.items += 1
        report.overridden += stored.overridden
    report.transitions = dict(sorted(report.transitions.items()))
    return report
