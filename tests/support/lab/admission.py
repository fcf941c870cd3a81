"""Pod readiness that follows the real servers: a mutating admission webhook on loopback.

kwok marks a pod Ready as soon as it is scheduled; a real pod turns Ready only once its server has
loaded the model. To keep the operator honest (it must never route to an unready canary), every new
serving pod of the lab's ModelDeployment is admitted with kwok's `modelpilot.io/kwok-unready` knob,
and the lab removes the annotation once the real server for that pod's track and version is ready.

The API server runs on this host, so it reaches the webhook at https://127.0.0.1:<port>; the
certificate is self-signed for that address and given to the API server as the caBundle.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client

UNREADY_ANNOTATION = "modelpilot.io/kwok-unready"
DEPLOYMENT_LABEL = "modelpilot.io/deployment"
TRACK_LABEL = "modelpilot.io/track"
PATH = "/hold-pods-unready"


@dataclass(frozen=True)
class SelfSignedCertificate:
    """A certificate for 127.0.0.1 and its key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes


def self_signed_for_loopback() -> SelfSignedCertificate:
    """A one-day EC certificate valid for IP 127.0.0.1 (its own CA, as the caBundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelpilot-lab")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SelfSignedCertificate(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def server_ssl_context(certificate: SelfSignedCertificate) -> ssl.SSLContext:
    """A TLS server context for the certificate (the files only live while it loads them)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "tls.crt"), Path(folder, "tls.key")
        cert_file.write_bytes(certificate.cert_pem)
        key_file.write_bytes(certificate.key_pem)
        context.load_cert_chain(cert_file, key_file)
    return context


def unready_patch(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch that adds the kwok-unready annotation to `pod`."""
    annotations = (pod.get("metadata") or {}).get("annotations")
    if not annotations:
        return [{"op": "add", "path": "/metadata/annotations", "value": {UNREADY_ANNOTATION: "true"}}]
    escaped = UNREADY_ANNOTATION.replace("~", "~0").replace("/", "~1")
    return [{"op": "add", "path": f"/metadata/annotations/{escaped}", "value": "true"}]


async def review(request: web.Request) -> web.Response:
    """Answer an AdmissionReview for a pod: allowed, with the unready annotation added."""
    document = await request.json()
    admission = document["request"]
    patch = unready_patch(admission.get("object") or {})
    response = {
        "uid": admission["uid"],
        "allowed": True,
        "patchType": "JSONPatch",
        "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
    }
    return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})


def webhook_app() -> web.Application:
    """The aiohttp app of the webhook."""
    app = web.Application()
    app.router.add_post(PATH, review)
    return app


def webhook_configuration(
    name: str, namespace: str, namespace_uid: str, resource_label: str, port: int, ca_pem: bytes
) -> dict[str, Any]:
    """A MutatingWebhookConfiguration for the serving pods of one ModelDeployment in one namespace.

    It is owned by the namespace, so it goes with it even when the lab could not remove it.
    """
    owner = {"apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": namespace_uid}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/part-of": "modelpilot-lab"},
            "ownerReferences": [owner],
        },
        "webhooks": [
            {
                "name": "hold-unready.lab.modelpilot.io",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}{PATH}",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "objectSelector": {
                    "matchExpressions": [
                        {"key": DEPLOYMENT_LABEL, "operator": "In", "values": [resource_label]},
                        {"key": TRACK_LABEL, "operator": "Exists"},
                    ]
                },
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                # A pod admitted without the hold would turn Ready before its server: refuse instead.
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }


def probe_pod(resource_label: str) -> dict[str, Any]:
    """A pod the webhook applies to, for a dry-run create that shows whether the webhook is in force."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "lab-probe-",
            "labels": {DEPLOYMENT_LABEL: resource_label, TRACK_LABEL: "stable"},
        },
        "spec": {"containers": [{"name": "probe", "image": "registry.invalid/probe"}]},
    }


def webhook_in_force(core: client.CoreV1Api, namespace: str, resource_label: str) -> bool:
    """Whether a dry-run pod create comes back with the unready annotation."""
    response: Any = core.create_namespaced_pod(
        namespace, cast(Any, probe_pod(resource_label)), dry_run="All", _preload_content=False
    )
    annotations = json.loads(response.data)["metadata"].get("annotations") or {}
    return bool(annotations.get(UNREADY_ANNOTATION) == "true")


def release_patch() -> dict[str, Any]:
    """The merge patch that removes the hold from a pod (kwok then marks it Ready)."""
    return {"metadata": {"annotations": {UNREADY_ANNOTATION: None}}}
