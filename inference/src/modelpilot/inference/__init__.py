"""modelpilot inference."""
