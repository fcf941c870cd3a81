module modelpilot.local/echo

go 1.26
