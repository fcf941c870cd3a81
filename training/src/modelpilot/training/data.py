"""A seeded generator of network-flow records labelled benign or attack.

The rows look like the per-flow features of intrusion-detection data sets: volumes, rates, TCP flag
ratios, timing and host-level counts. Benign traffic follows one correlated profile; attacks come
from three families (port scans, floods, exfiltration), each shifting a few features, and make up a
minority of the rows. A share of flows is mislabelled and the families overlap with benign traffic,
so the task is learnable but not trivial. `drift` moves the benign profile (heavier, faster flows and
a different protocol mix) to exercise drift detection and retraining.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LABEL = "label"
"""Name of the target column: 0 benign, 1 attack."""

CLASS_NAMES = ("benign", "attack")

FEATURES: list[str] = [
    "duration",
    "protocol",
    "src_bytes",
    "dst_bytes",
    "src_packets",
    "dst_packets",
    "bytes_per_packet",
    "packets_per_second",
    "syn_ratio",
    "ack_ratio",
    "rst_ratio",
    "fin_ratio",
    "flow_iat_mean",
    "flow_iat_std",
    "dst_port_class",
    "unique_dst_ports",
    "conn_count_window",
    "same_service_rate",
    "error_rate",
    "payload_entropy",
]
"""Feature columns in the order the model takes them."""

SEGMENT_FEATURE = "protocol"
"""A categorical feature (0 TCP, 1 UDP, 2 ICMP) whose values split the data into segments."""

ATTACK_SHARE = 0.15
LABEL_NOISE = 0.03


def generate_flows(n_rows: int, seed: int, drift: float = 0.0) -> pd.DataFrame:
    """`n_rows` flows with FEATURES and a LABEL column, the same for the same seed and drift.

    `drift` = 0 is the reference distribution; larger values move benign traffic further from it.
    """
    if n_rows < 1:
        raise ValueError("n_rows must be at least 1")
    rng = np.random.default_rng(seed)
    is_attack = rng.random(n_rows) < ATTACK_SHARE
    family = np.where(is_attack, rng.integers(1, 4, n_rows), 0)  # 0 benign, 1 scan, 2 flood, 3 exfiltration

    # Two latent factors drive most columns, which makes the features correlated like real flows:
    # how much a flow carries and how bursty it is.
    volume = rng.normal(0.0, 1.0, n_rows) + 0.6 * drift
    burst = rng.normal(0.0, 1.0, n_rows) + 0.3 * drift
    scan, flood, exfil = family == 1, family == 2, family == 3

    protocol_weights = np.array([0.7 - 0.2 * min(drift, 1.5), 0.25 + 0.15 * min(drift, 1.5), 0.05])
    protocol = rng.choice(3, n_rows, p=protocol_weights / protocol_weights.sum()).astype(float)
    protocol[flood] = rng.choice(3, int(flood.sum()), p=[0.5, 0.3, 0.2])

    volume = volume - 1.2 * scan + 0.4 * flood + 1.3 * exfil
    burst = burst + 1.3 * flood + 0.5 * scan
    noise = rng.normal(0.0, 1.0, (n_rows, 8))

    src_packets = np.exp(2.0 + 0.8 * volume + 0.3 * noise[:, 0])
    dst_packets = src_packets * np.exp(-0.2 + 0.3 * noise[:, 1] - 1.0 * scan - 0.8 * flood - 0.5 * exfil)
    bytes_per_packet = np.exp(6.0 + 0.4 * volume + 0.3 * noise[:, 2] - 0.8 * scan + 0.5 * exfil)
    src_bytes = src_packets * bytes_per_packet
    dst_bytes = dst_packets * bytes_per_packet * np.exp(0.3 * noise[:, 3])
    duration = np.exp(0.5 + 0.7 * volume - 0.7 * burst + 0.4 * noise[:, 4])
    packets_per_second = (src_packets + dst_packets) / duration
    flow_iat_mean = duration / (src_packets + dst_packets)
    flow_iat_std = flow_iat_mean * np.exp(0.3 * burst + 0.3 * noise[:, 5])

    def ratio(base: float, shift: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-(base + shift + 0.6 * rng.normal(0.0, 1.0, n_rows)))))

    syn_ratio = ratio(-2.5, 1.8 * scan + 2.2 * flood)
    ack_ratio = ratio(1.5, -1.8 * scan - 1.2 * flood)
    rst_ratio = ratio(-3.0, 2.0 * scan)
    fin_ratio = ratio(-1.5, -0.8 * flood + 0.3 * exfil)

    dst_port_class = rng.choice(3, n_rows, p=[0.6, 0.3, 0.1]).astype(float)  # well-known, registered, dynamic
    dst_port_class[scan] = rng.choice(3, int(scan.sum()), p=[0.3, 0.35, 0.35])
    unique_dst_ports = rng.poisson(np.exp(0.5 + 0.2 * burst + 2.2 * scan)).astype(float)
    conn_count_window = rng.poisson(np.exp(1.5 + 0.3 * burst + 1.2 * flood + 0.8 * scan)).astype(float)
    same_service_rate = ratio(1.5, -1.5 * scan + 0.8 * flood)
    error_rate = ratio(-3.0, 1.5 * scan + 1.0 * flood + 0.1 * noise[:, 6])
    payload_entropy = np.clip(5.5 + 0.5 * noise[:, 7] + 1.2 * exfil - 1.0 * flood, 0.0, 8.0)

    label = is_attack.copy()
    flipped = rng.random(n_rows) < LABEL_NOISE
    label[flipped] = ~label[flipped]

    columns = {
        "duration": duration,
        "protocol": protocol,
        "src_bytes": src_bytes,
        "dst_bytes": dst_bytes,
        "src_packets": np.round(src_packets),
        "dst_packets": np.round(dst_packets),
        "bytes_per_packet": bytes_per_packet,
        "packets_per_second": packets_per_second,
        "syn_ratio": syn_ratio,
        "ack_ratio": ack_ratio,
        "rst_ratio": rst_ratio,
        "fin_ratio": fin_ratio,
        "flow_iat_mean": flow_iat_mean,
        "flow_iat_std": flow_iat_std,
        "dst_port_class": dst_port_class,
        "unique_dst_ports": unique_dst_ports,
        "conn_count_window": conn_count_window,
        "same_service_rate": same_service_rate,
        "error_rate": error_rate,
        "payload_entropy": payload_entropy,
    }
    frame = pd.DataFrame({name: np.asarray(columns[name], dtype=np.float32) for name in FEATURES})
    frame[LABEL] = label.astype(np.int64)
    return frame
