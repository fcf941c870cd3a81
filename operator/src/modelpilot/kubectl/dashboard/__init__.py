"""`kubectl modelpilot dashboard`: a local web page about the ModelDeployments, served by the plugin on loopback.

`views` turns the objects into what the page shows (pure), `csv_input` turns an uploaded CSV into a prediction
request (pure), `server` serves the page and its JSON from the API server with the caller's kubeconfig, and
`static/` is the page itself: HTML, CSS and a script that draws its charts as inline SVG.
"""
