"""`kubectl modelpilot`: see a ModelDeployment's rollout at a glance and act on it in one command.

A kubectl plugin (the `kubectl-modelpilot` program; `python -m modelpilot.kubectl` runs the same). It
reads the API server with the caller's kubeconfig and acts only through the request annotations the
operator answers (`modelpilot.operator.rollout.requests`), signed with the caller's own user name as
the API server reports it (a SelfSubjectReview).
"""
