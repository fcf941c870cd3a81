module modelpilot.local/pause

go 1.26
