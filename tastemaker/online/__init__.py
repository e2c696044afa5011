"""Online learning: bandit policies that choose slates and learn from feedback as it arrives.

:mod:`tastemaker.online.base` has the contract (:class:`Policy`, :class:`Arms`,
:class:`Selection`, :class:`Feedback`); :mod:`tastemaker.online.policies` the policies. A
policy plugs into a pipeline as its explorer (:class:`tastemaker.pipeline.explore.BanditExplorer`).
"""

from tastemaker.online.base import Arms, Feedback, Policy, PolicyConfig, PolicyError, Selection
from tastemaker.online.policies import (
    POLICIES,
    UCB1,
    BetaThompson,
    DiagLinUCB,
    EpsilonGreedy,
    LinearThompson,
    LinUCB,
    PositionThompson,
    RandomPolicy,
    SlateThompson,
    policy_class,
    policy_from_state,
)

__all__ = [
    "POLICIES", "UCB1", "Arms", "BetaThompson", "DiagLinUCB", "EpsilonGreedy", "Feedback", "LinUCB", "LinearThompson",
    "Policy", "PolicyConfig", "PolicyError", "PositionThompson", "RandomPolicy", "Selection", "SlateThompson",
    "policy_class", "policy_from_state",
]
