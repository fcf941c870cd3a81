"""Requests per second through the Gateway's loopback listener to real stable and canary pods.

Closed loop, bounded: `--concurrency` senders post one OIP v2 request each after the other for `--seconds`,
then stop. It reports the rate, latency percentiles, status codes and the versions that answered. Run it
against a cluster set up by `hack/demo --keep` (or `hack/e2e install` and a served ModelDeployment):

    python -m benchmarks.gateway_throughput --host fraud.demo.modelpilot.test --model fraud-detector
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter

import httpx

from tests.e2e.deployments import infer_body


def run(url: str, host: str, model: str, seconds: float, concurrency: int) -> dict[str, object]:
    """Send for `seconds` from `concurrency` threads; the figures."""
    client = httpx.Client(base_url=url, headers={"host": host}, timeout=10)
    metadata = client.get(f"/v2/models/{model}")
    metadata.raise_for_status()
    body = infer_body(metadata.json())
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def send() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = client.post(f"/v2/models/{model}/infer", json=body)
                code = response.status_code
                version = str(response.json().get("model_version")) if code == 200 else ""
            except httpx.HTTPError:
                code, version = 0, ""
            with lock:
                latencies.append(time.perf_counter() - started)
                codes[code] += 1
                if version:
                    versions[version] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=send, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1) if ordered else None,
        "codes": dict(codes),
        "versions": dict(versions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:18000", help="the Gateway's listener (loopback)")
    parser.add_argument("--host", required=True, help="a hostname of the ModelDeployment's HTTPRoute")
    parser.add_argument("--model", required=True, help="the registered model's name")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(run(args.url, args.host, args.model, args.seconds, args.concurrency))


if __name__ == "__main__":
    main()
