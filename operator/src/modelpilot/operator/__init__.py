"""modelpilot operator."""
