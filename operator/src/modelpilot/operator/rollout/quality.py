"""PromQL for the model quality of a candidate: pure, no I/O.

The serving pods export two counters, summed here over the pods of one model version in one namespace
(the `namespace` label comes from Prometheus's pod discovery, the others from the pods):

- `modelpilot_labelled_predictions_total{model, version, track, predicted, actual, correct}`: one per
  prediction whose ground truth arrived, with the labels of the prediction. Over an analysis window it gives
  the canary's labelled predictions (`labelled_predictions`), its accuracy and, for one positive class, its
  precision and recall. Labels arrive late: the window counts the labels that arrived in it.
- `modelpilot_shadow_comparisons_total{model, version, stable_version, agreed}`: one per answer of the
  candidate to mirrored traffic that was compared with the stable track's answer to the same input. Over the
  shadow phase it gives the comparisons and the share that agreed.

Each ratio is empty (no data) when its denominator has no series or is 0, never NaN or a guess. The serving
pods create a series at its first increment, which increase() alone would not count (`_sum_increase`).
"""

from __future__ import annotations

from modelpilot.operator.builders.server_metrics import promql_label_value, track_matchers

LABELLED_METRIC = "modelpilot_labelled_predictions_total"
SHADOW_METRIC = "modelpilot_shadow_comparisons_total"


def _selector(matchers: list[str], *extra: str) -> str:
    return "{" + ",".join([*matchers, *extra]) + "}"


def _sum_increase(metric: str, selector: str, window: str) -> str:
    """What the series counted in the window, summed. increase() starts from a series' first sample, so a
    series born inside the window would lose its whole first count — and the serving pods create a series at
    its first increment: a new version's first labels, one bulk upload of a thousand. Series that existed at
    the window's start count with their increase(), series born in it with their value (all of it came in
    the window)."""
    series = f"{metric}{selector}"
    return (
        f"sum((increase({series}[{window}]) and {series} offset {window})"
        f" or ({series} unless {series} offset {window}))"
    )


def _ratio(numerator: str, denominator: str) -> str:
    # No series for the numerator (e.g. nothing correct yet) is 0; a denominator of 0 leaves the result empty.
    return f"({numerator} or vector(0)) / ({denominator} > 0)"


def labelled_count_query(namespace: str, model: str, version: str, window: str) -> str:
    """Canary predictions of `version` whose label arrived in the window."""
    matchers = track_matchers(namespace, model, "canary", version)
    return _sum_increase(LABELLED_METRIC, _selector(matchers), window)


def accuracy_query(namespace: str, model: str, version: str, window: str) -> str:
    """Share of the canary's labelled predictions in the window that were correct."""
    matchers = track_matchers(namespace, model, "canary", version)
    correct = _sum_increase(LABELLED_METRIC, _selector(matchers, 'correct="true"'), window)
    return _ratio(correct, _sum_increase(LABELLED_METRIC, _selector(matchers), window))


def precision_query(namespace: str, model: str, version: str, window: str, positive: str) -> str:
    """Of the canary's labelled predictions of `positive`, the share whose actual class was `positive`."""
    matchers = track_matchers(namespace, model, "canary", version)
    value = promql_label_value(positive)
    predicted = f'predicted="{value}"'
    hits = _sum_increase(LABELLED_METRIC, _selector(matchers, predicted, f'actual="{value}"'), window)
    return _ratio(hits, _sum_increase(LABELLED_METRIC, _selector(matchers, predicted), window))


def recall_query(namespace: str, model: str, version: str, window: str, positive: str) -> str:
    """Of the canary's labelled inputs whose actual class was `positive`, the share it predicted as `positive`."""
    matchers = track_matchers(namespace, model, "canary", version)
    value = promql_label_value(positive)
    actual = f'actual="{value}"'
    hits = _sum_increase(LABELLED_METRIC, _selector(matchers, f'predicted="{value}"', actual), window)
    return _ratio(hits, _sum_increase(LABELLED_METRIC, _selector(matchers, actual), window))


def _shadow_matchers(namespace: str, model: str, version: str) -> list[str]:
    # The counter has no track: the candidate's version is what tells its comparisons apart.
    matchers = [f'namespace="{promql_label_value(namespace)}"'] if namespace else []
    return [*matchers, f'model="{promql_label_value(model)}"', f'version="{promql_label_value(version)}"']


def shadow_comparisons_query(namespace: str, model: str, version: str, seconds: int) -> str:
    """Answers of candidate `version` compared with stable's in the last `seconds` (the phase so far)."""
    return _sum_increase(SHADOW_METRIC, _selector(_shadow_matchers(namespace, model, version)), f"{seconds}s")


def shadow_agreed_query(namespace: str, model: str, version: str, seconds: int) -> str:
    """Of those, the answers that agreed with stable's."""
    selector = _selector(_shadow_matchers(namespace, model, version), 'agreed="true"')
    return _sum_increase(SHADOW_METRIC, selector, f"{seconds}s")
