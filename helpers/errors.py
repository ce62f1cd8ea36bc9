"""Errors a user can cause, each carrying one sentence that says what to do.

The CLI prints ``str(error)`` and exits non-zero; notebooks show the same sentence.
Anything that is *not* a ``HelpersError`` is a bug in this package and keeps its traceback.
"""
from __future__ import annotations


class HelpersError(Exception):
    """Base class: a problem the user can fix, described in one sentence."""


class NoBrokerError(HelpersError):
    """No RabbitMQ broker could be found or started."""


class BrokerConnectionError(HelpersError):
    """The broker was found but refused us (credentials, vhost, down)."""


class BrokerAuthError(BrokerConnectionError):
    """Wrong credentials or a virtual host we may not use: retrying will not help."""


class BrokerControlError(HelpersError):
    """The broker cannot be started, stopped or restarted from here."""


class TopologyError(HelpersError):
    """A queue declaration clashed with the broker's existing queue (or was refused).

    ``final`` is False for a refusal that may pass (e.g. a quorum queue still starting).
    """

    def __init__(self, message: str, final: bool = True):
        super().__init__(message)
        self.final = final


class BadInputError(HelpersError, ValueError):
    """A value given by the user (CLI flag, widget, workload file) is out of range."""
