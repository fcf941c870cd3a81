"""The modelpilot prediction server: loads one MLflow model and serves it over HTTP.

MLflow 3 sends usage telemetry unless told otherwise; a serving pod must not call out by default,
so the opt-outs are set before anything imports mlflow. `MODELPILOT_ALLOW_TELEMETRY=true` keeps
MLflow's own default.

The server forks a child to deserialise pt2 models (`pt2_child`); the child never calls gRPC and leaves with
`os._exit`. gRPC's fork handlers would only try to pause the gRPC server's threads around that fork (and log,
at every start, that they cannot while those threads are busy), so they are off unless asked for.
"""

import os

if os.environ.get("MODELPILOT_ALLOW_TELEMETRY", "").lower() not in {"1", "true", "yes"}:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
