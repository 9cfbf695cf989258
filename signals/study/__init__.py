"""Count-level simulation study of batch-level detection: scenarios, methods, oracle, summary.

See :mod:`signals.study.scenarios` (the simulated world), :mod:`signals.study.methods` (every
method applied week by week with no look-ahead, and the oracle) and
:mod:`signals.study.operating` (operating characteristics per scenario and method).
"""

from signals.study.operating import default_scenarios, operating_characteristics
from signals.study.scenarios import Scenario, StudyDesign, simulate

__all__ = ["Scenario", "StudyDesign", "simulate", "default_scenarios", "operating_characteristics"]
