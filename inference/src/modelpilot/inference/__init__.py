"""The modelpilot prediction server: loads one MLflow model and serves it over HTTP.

MLflow 3 sends usage telemetry unless told otherwise; a serving pod must not call out by default,
so the opt-outs are set before anything imports mlflow. `MODELPILOT_ALLOW_TELEMETRY=true` keeps
MLflow's own default.
"""

import os

if os.environ.get("MODELPILOT_ALLOW_TELEMETRY", "").lower() not in {"1", "true", "yes"}:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
