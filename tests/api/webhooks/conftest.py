"""MLflow caches the webhooks of each event for MLFLOW_WEBHOOK_CACHE_TTL (60 s by default): a webhook
created after an alias was set elsewhere in the session would stay unseen that long. The session's
MLflow server inherits this environment when it starts."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_WEBHOOK_CACHE_TTL", "1")
