"""What the broker-side fault runs share in their options values: a fault some seconds in,
tasks published in batches meanwhile (retried after a lost connection), and the run's size.

``broker_down.BrokerDownOptions`` and ``leader_kill.NodeLossOptions`` extend
``PacedFaultOptions`` with their own fields; ``faults.run_fault`` builds a scenario's value
(its module's ``OPTIONS``) from keywords, the CLI from the options its ``COMMAND_LINE`` names.
"""
from __future__ import annotations

from dataclasses import dataclass

from helpers import settings
from helpers.checks import is_number
from helpers.errors import BadInputError
from helpers.publish.options import PublishOptions


@dataclass(frozen=True)
class PacedFaultOptions:
    """A fault ``fault_after_s`` into a run whose tasks go out ``batch`` every ``pace_s``."""

    #: seconds after the first confirmed publish at which the fault strikes
    fault_after_s: float = 1.0
    #: tasks per publish call, and the pause between calls (publishing takes
    #: ``len(tasks) / batch * pace_s`` seconds or more, so the fault lands in the middle)
    batch: int = 10
    pace_s: float = 0.05
    #: seconds to wait for every task (None: the run skeleton's budget)
    timeout: float | None = None
    #: write the run's events and summary under ``data/runs``
    save: bool = True
    #: the run's name (None: the fault's)
    label: str | None = None

    def __post_init__(self):
        if not (is_number(self.fault_after_s) and self.fault_after_s >= 0):
            raise BadInputError(f"fault_after_s must be 0 or more seconds "
                                f"(got {self.fault_after_s!r}).")
        self.publish()  # batch and pace_s are checked by the value they go into

    def publish(self) -> PublishOptions:
        """Batches at this pace, each retried on a new connection after a lost one."""
        return PublishOptions(batch=self.batch, pace_s=self.pace_s,
                              retry_for=settings.RECONNECT_FOR_S)
