"""The study's secondary metrics: how well a reply's devices, settings and numbers match.

Each compares what :func:`parse_reply` reads from the prediction with what it reads from the
reference reply. docs/METRICS.md gives the definitions with a worked example.
"""

from __future__ import annotations

from collections import Counter

from shpers_core.evaluation.parsing import Device, Parameter, ParsedReply, parse_reply

METRIC_NAMES = ("embedding_similarity", "device_precision", "parameter_f1", "numerical_precision")
METRIC_LABELS = {
    "embedding_similarity": "Embedding similarity",
    "device_precision": "Device precision",
    "parameter_f1": "Parameter F1",
    "numerical_precision": "Numerical precision",
}


def _same_device(p: Device, r: Device) -> bool:
    return p.kind == r.kind and (p.area is None or r.area is None or p.area == r.area)


def device_precision(pred: ParsedReply, ref: ParsedReply) -> float:
    """Share of predicted devices that the reference also names (an unstated area matches any).

    A prediction naming no device scores 1.0 when the reference names none, else 0.0.
    """
    if not pred.devices:
        return 0.0 if ref.devices else 1.0
    correct = sum(any(_same_device(p, r) for r in ref.devices) for p in pred.devices)
    return correct / len(pred.devices)


def _compatible(p: Parameter, r: Parameter) -> bool:
    # "21 degrees" leaves the scale open, so it can stand for "21°C" or "21°F".
    if p.kind != "temperature" or r.kind != "temperature":
        return False
    pv, rv = p.value, r.value
    return (pv.endswith("°") and rv.startswith(pv)) or (rv.endswith("°") and pv.startswith(rv))


def matched_parameters(pred: tuple[Parameter, ...], ref: tuple[Parameter, ...]) -> int:
    """Size of a one-to-one matching: equal pairs first, then a unitless temperature with any unit."""
    left, right = Counter(pred), Counter(ref)
    exact = left & right
    left, right = left - exact, right - exact
    matched = sum(exact.values())
    rest = list(right.elements())
    for p in left.elements():
        for i, r in enumerate(rest):
            if _compatible(p, r):
                matched += 1
                del rest[i]
                break
    return matched


def parameter_f1(pred: ParsedReply, ref: ParsedReply) -> float:
    """F1 of the multisets of (kind, value) parameters; 1.0 when both replies have none."""
    total = len(pred.parameters) + len(ref.parameters)
    if total == 0:
        return 1.0
    return 2 * matched_parameters(pred.parameters, ref.parameters) / total


def numerical_precision(pred: ParsedReply, ref: ParsedReply) -> float:
    """Share of the distinct numbers in the prediction that the reference also contains.

    A prediction with no number scores 1.0 when the reference has none, else 0.0.
    """
    predicted = set(pred.numbers)
    if not predicted:
        return 0.0 if ref.numbers else 1.0
    return len(predicted & set(ref.numbers)) / len(predicted)


def score_reply(prediction: str, reference: str) -> dict[str, float]:
    """The three secondary metrics of one predicted reply against its reference."""
    pred, ref = parse_reply(prediction), parse_reply(reference)
    return {
        "device_precision": device_precision(pred, ref),
        "parameter_f1": parameter_f1(pred, ref),
        "numerical_precision": numerical_precision(pred, ref),
    }
