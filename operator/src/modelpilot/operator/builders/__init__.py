"""Pure manifest builders: a ModelDeployment spec in, Kubernetes objects (plain dicts) out, no I/O."""
