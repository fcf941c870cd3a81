"""Kubernetes' own rules for values the spec copies into derived objects, as CEL / schema constraints for the CRD
and as the same checks in Python for the operator's parsing.

Each rule is the one the API server applies to the field the value lands in (`k8s.io/apimachinery`'s
`IsDNS1123Subdomain`, `IsQualifiedName`, `IsValidLabelValue`, `IsEnvVarName` with relaxed names, `ValidateQuantity`,
`IsValidPathSegmentName`, the Ingress and Gateway API path rules), so a spec the CRD accepts never yields an
object the API server refuses for these reasons, and no value Kubernetes accepts is refused here.
Regular expressions use no backslashes, so they read the same in Python, in the CRD's YAML and inside CEL strings.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, Field

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_PATTERN = f"^{_LABEL}$"
DNS1123_SUBDOMAIN_PATTERN = f"^{_LABEL}([.]{_LABEL})*$"
DNS1123_SUBDOMAIN_MAX = 253
WILDCARD_SUBDOMAIN_PATTERN = f"^([*][.])?{_LABEL}([.]{_LABEL})*$"
# A label or annotation key: an optional DNS-1123 subdomain prefix and '/', then a name of at most 63 characters.
QUALIFIED_NAME_PATTERN = f"^({_LABEL}([.]{_LABEL})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 253 + 1 + 63
# Entries of a map whose keys the CRD checks (node selector, annotations): CEL's cost budget needs a bound.
MAP_MAX_ENTRIES = 64
# Relaxed environment variable names (GA in Kubernetes 1.34): printable ASCII other than '='.
ENV_NAME_PATTERN = "^[ -<>-~]+$"
# What ParseIPSloppy takes for an IPv4 address (leading zeros allowed): an Ingress host must not be one.
_OCTET = "0*(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = f"^{_OCTET}([.]{_OCTET}){{3}}$"
# A quantity (resource.ParseQuantity): a signed decimal number and a binary-SI, decimal-SI or exponent suffix.
QUANTITY_PATTERN = "^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
# The same, without a sign or with '+': the amounts of container resources must not be negative.
NONNEGATIVE_QUANTITY_PATTERN = "^[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
ResourceQuantity = Annotated[
    Annotated[int, Field(ge=0)] | Annotated[str, Field(max_length=64, pattern=NONNEGATIVE_QUANTITY_PATTERN)],
    Field(description="A Kubernetes quantity of at least 0, e.g. 500m, 2Gi or 1."),
]
# Gateway API's HTTPPathMatch characters for Exact and PathPrefix matches.
GATEWAY_PATH_PATTERN = "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"
GATEWAY_PATH_MAX = 1024
INT32_MAX = 2**31 - 1

QUALIFIED_NAME_MESSAGE = (
    "must be a qualified name: an optional DNS subdomain prefix (at most 253 characters) and '/', then at most 63 "
    "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)
LABEL_VALUE_MESSAGE = (
    "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)
DNS1123_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain: lower-case letters, digits, '-' and '.', each dot-separated part starting and "
    "ending with a letter or digit"
)


def qualified_name_cel(var: str) -> str:
    """CEL that is true when the string `var` is a qualified name (a label or annotation key)."""
    return f"{var}.matches('{QUALIFIED_NAME_PATTERN}') && (!{var}.contains('/') || {var}.indexOf('/') <= 253)"


def is_qualified_name(text: str) -> bool:
    """Whether `text` is a valid label or annotation key."""
    return bool(re.match(QUALIFIED_NAME_PATTERN, text)) and ("/" not in text or text.index("/") <= 253)


def _qualified_key(text: str) -> str:
    if not is_qualified_name(text):
        raise ValueError(f"key {text!r} {QUALIFIED_NAME_MESSAGE}")
    return text


QualifiedName = Annotated[str, AfterValidator(_qualified_key)]
LabelValue = Annotated[str, Field(max_length=LABEL_VALUE_MAX, pattern=LABEL_VALUE_PATTERN)]
Dns1123Subdomain = Annotated[
    str, Field(min_length=1, max_length=DNS1123_SUBDOMAIN_MAX, pattern=DNS1123_SUBDOMAIN_PATTERN)
]


def keyed_by_qualified_names(what: str) -> dict[str, Any]:
    """`json_schema_extra` of a map field whose keys become label or annotation keys of `what`."""
    rule = f"self.all(k, {qualified_name_cel('k')})"
    return {"x-kubernetes-validations": [{"rule": rule, "message": f"every key of {what} {QUALIFIED_NAME_MESSAGE}"}]}


def _no_surrounding_space(text: str) -> str:
    if text.strip() != text:
        raise ValueError("must not have leading or trailing whitespace")
    return text


# A container image: Kubernetes refuses only surrounding whitespace (the runtime judges the reference).
Image = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.trim() == self", "message": "an image must not have leading or trailing whitespace"}
            ]
        },
    ),
    AfterValidator(_no_surrounding_space),
]


_QUANTITY_SUFFIXES = {
    **{suffix: Decimal(1024) ** power for power, suffix in enumerate(("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{suffix: Decimal(10) ** (3 * power) for power, suffix in enumerate(("", "k", "M", "G", "T", "P", "E"))},
    "m": Decimal("1e-3"),
    "u": Decimal("1e-6"),
    "n": Decimal("1e-9"),
}
_QUANTITY_PARTS = re.compile("^([+-]?([0-9]+([.][0-9]*)?|[.][0-9]+))(([eE][+-]?[0-9]+)|[KMGTPE]i|[numkMGTPE])?$")


def quantity_amount(value: int | str) -> Decimal:
    """The number a Kubernetes quantity stands for (`1500m` is 1.5, `2Ki` 2048); ValueError when it is none."""
    match = _QUANTITY_PARTS.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a quantity like 500m, 2Gi or 1")
    number, suffix = match.group(1), match.group(4) or ""
    try:
        if suffix[:1] in {"e", "E"}:
            return Decimal(number + suffix)
        return Decimal(number) * _QUANTITY_SUFFIXES[suffix]
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a quantity like 500m, 2Gi or 1") from None


def quantity_sign(text: str) -> int:
    """-1, 0 or 1: the sign of a Kubernetes quantity; ValueError when `text` is not one."""
    amount = quantity_amount(text)
    return (amount > 0) - (amount < 0)


def is_extended_resource(name: str) -> bool:
    """Whether a container resource is an extended one (a domain-prefixed name outside kubernetes.io, e.g.
    nvidia.com/gpu): the Pod API takes only whole amounts of those, and a request equal to the limit."""
    return "/" in name and "kubernetes.io/" not in name and not name.startswith("requests.")


def extended_resource_cel(var: str) -> str:
    """CEL: the resource name `var` is an extended resource (`is_extended_resource`)."""
    return f"({var}.contains('/') && !{var}.contains('kubernetes.io/') && !{var}.startsWith('requests.'))"


HTTP_PATH_RULES: list[tuple[str, str]] = [
    ("self.startsWith('/')", "must be an absolute path (start with '/')"),
    *[(f"!self.contains('{part}')", f"must not contain '{part}'") for part in ("//", "/./", "/../", "%2f", "%2F")],
    *[(f"!self.endsWith('{end}')", f"must not end with '{end}'") for end in ("/..", "/.")],
]
# Gateway API refuses these as well in an HTTPRoute path (and more than 1024 characters).
GATEWAY_PATH_RULES: list[tuple[str, str]] = [
    *HTTP_PATH_RULES,
    ("!self.contains('#')", "must not contain '#'"),
    (
        f'self.matches("{GATEWAY_PATH_PATTERN}")',
        "must only contain valid URI path characters (letters, digits, -/._~!$&'()*+,;=:@ and %XX escapes)",
    ),
]


def http_path_problem(path: str, *, gateway: bool) -> str | None:
    """What Kubernetes (Ingress, `gateway=False`) or Gateway API (HTTPRoute) refuses in a prefix path; None if fine."""
    if not path.startswith("/"):
        return "must be an absolute path (start with '/')"
    for part in ("//", "/./", "/../", "%2f", "%2F"):
        if part in path:
            return f"must not contain '{part}'"
    for end in ("/..", "/."):
        if path.endswith(end):
            return f"must not end with '{end}'"
    if gateway and "#" in path:
        return "must not contain '#'"
    if gateway and not re.match(GATEWAY_PATH_PATTERN, path):
        return "must only contain valid URI path characters"
    return None


def is_label_value(text: str) -> bool:
    """Whether `text` is a valid label value."""
    return len(text) <= LABEL_VALUE_MAX and bool(re.match(LABEL_VALUE_PATTERN, text))
