"""modelpilot training."""
