"""HTTP calls made from inside the cluster, run in a pod of the test namespace with the standard library only.

`python pod_client.py get URL`, `delete URL`, `post URL BODY` print one JSON line `{"status": …, "body": …}`;
`load URL BODY RATE SECONDS` sends BODY to URL RATE times a second for SECONDS (open loop, bounded) and
prints the count of answers by status code every five seconds and at the end; `receive PORT` answers 200 to
every POST on PORT and prints its JSON body as one line `{"received": …}` (a webhook receiver whose log the
test reads). The test hands this file's
source to `python -c`, so every request goes through the cluster's DNS, Services and pod network.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def call(method: str, url: str, body: str | None = None, timeout: float = 10) -> tuple[int, str]:
    """One request; the status and body of any answer, 0 and the error for no answer."""
    data = None if body is None else body.encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def load(url: str, body: str, rate: float, seconds: float) -> None:
    """Send `body` at `rate` per second for `seconds`, then stop; report counts by status as it goes."""
    counts: dict[str, int] = {}
    start = time.monotonic()
    sent = 0
    last_report = start
    while (now := time.monotonic()) - start < seconds:
        due = start + sent / rate
        if now < due:
            time.sleep(due - now)
        status, _ = call("POST", url, body, timeout=5)
        counts[str(status)] = counts.get(str(status), 0) + 1
        sent += 1
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            print(json.dumps({"counts": counts}), flush=True)
    print(json.dumps({"counts": counts, "done": True}), flush=True)


class Receiver(BaseHTTPRequestHandler):
    """Prints each POSTed JSON body as one line; bodies are bounded (webhook deliveries are small)."""

    def do_POST(self) -> None:
        length = min(int(self.headers.get("content-length") or 0), 1 << 20)
        try:
            document = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            document = None
        print(json.dumps({"received": document}), flush=True)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "get":
        status, text = call("GET", argv[1])
    elif command == "delete":
        status, text = call("DELETE", argv[1])
    elif command == "post":
        status, text = call("POST", argv[1], argv[2])
    elif command == "receive":
        ThreadingHTTPServer(("0.0.0.0", int(argv[1])), Receiver).serve_forever()
        return
    elif command == "load":
        load(argv[1], argv[2], float(argv[3]), float(argv[4]))
        return
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps({"status": status, "body": text}))


if __name__ == "__main__":
    main(sys.argv[1:])
