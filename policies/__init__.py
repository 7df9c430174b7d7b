"""The pure policy engine: verdict + thresholds -> a frozen ``Decision``.

No SQLAlchemy, Celery or Redis here (a test and ``.importlinter`` enforce it): the engine decides, the
worker carries out. May import: the core's schemas only.
"""

from memeguard.schemas import Decision  # the value the engine returns lives in the core layer
from policies.engine import evaluate
from policies.loader import PolicyError, PolicyIssue, default_policy_path, load_policy, parse_policy
from policies.model import Condition, ConfidenceRange, Policy, Rule

__all__ = [
    "Condition",
    "ConfidenceRange",
    "Decision",
    "Policy",
    "PolicyError",
    "PolicyIssue",
    "Rule",
    "default_policy_path",
    "evaluate",
    "load_policy",
    "parse_policy",
]
