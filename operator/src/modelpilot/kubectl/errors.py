"""What the plugin tells a person instead of a traceback: one message, one exit code."""

from __future__ import annotations


class PluginError(Exception):
    """A failure explained in the message; the plugin prints it and exits with `exit_code`."""

    exit_code = 1


class NotFoundError(PluginError):
    """The ModelDeployment (or what was asked for) does not exist."""

    exit_code = 3


class ForbiddenError(PluginError):
    """The caller may not do it (RBAC), or an admission policy refused it."""

    exit_code = 4


class NotApplicableError(PluginError):
    """The action does not apply in the resource's current state."""

    exit_code = 5


class NoAnswerError(PluginError):
    """The request was made but the operator did not answer it in time."""

    exit_code = 6
