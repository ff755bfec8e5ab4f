"""An HTTPS upstream that checks SigV4 signatures the way VPC Lattice does, with botocore.

Usage: sigv4_upstream.py PORT CERT KEY CREDENTIALS_JSON REGION SERVICE [PUBLIC_KEYS_JSON]

CREDENTIALS_JSON maps access key ids to secret keys. Each request must carry an Authorization
header whose signature botocore recomputes from the headers it names; the payload is unsigned
(x-amz-content-sha256: UNSIGNED-PAYLOAD) and the host is compared without a default port.
PUBLIC_KEYS_JSON maps access key ids to the P-256 public key ({"X": hex, "Y": hex}) of their
SigV4A key: a SigV4A (AWS4-ECDSA-P256-SHA256) signature is then checked with `cryptography`
over botocore's canonical request, and its region set must include REGION.
A valid request gets 200 and a JSON body describing what arrived; anything else gets 403 with
Lattice's error text. Binds 127.0.0.1 only; prints "ready" once listening.
"""
import datetime
import hashlib
import http.server
import json
import re
import ssl
import sys
import urllib.parse

import botocore.auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


SIGV4A = re.compile(
    r"^AWS4-ECDSA-P256-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]+)$"
)


class LatticeSigV4(botocore.auth.SigV4Auth):
    """botocore's SigV4, over exactly the headers the request says it signed (as the service
    does), rather than botocore's own choice of headers for requests it sends."""

    def __init__(self, credentials, service, region, signed):
        super().__init__(credentials, service, region)
        self.signed = signed

    def headers_to_sign(self, request):
        headers = HTTPHeaders()
        for name in self.signed:
            for value in request.headers.get_all(name) or []:
                headers[name] = value
        return headers


def strip_default_port(host):
    for port in (":443", ":80"):
        if host.endswith(port):
            return host[: -len(port)]
    return host


class Verifier(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def check(self):
        """Returns None when the signature is valid, else the error text."""
        authorization = self.headers.get("Authorization")
        if authorization is None:
            return "IncompleteSignatureException: Authorization header is missing"
        if authorization.startswith("AWS4-ECDSA-P256-SHA256 "):
            return self.check_sigv4a(authorization)
        match = AUTHORIZATION.match(authorization)
        if match is None:
            return "IncompleteSignatureException: Authorization header is malformed"
        if match["region"] != REGION or match["service"] != SERVICE:
            return "InvalidSignatureException: Credential should be scoped to a valid region and service"
        secret = KEYS.get(match["key"])
        if secret is None:
            return "UnrecognizedClientException: The security token included in the request is invalid"
        if self.headers.get("x-amz-content-sha256") != "UNSIGNED-PAYLOAD":
            return "InvalidSignatureException: x-amz-content-sha256 must be UNSIGNED-PAYLOAD"
        signed = match["signed"].split(";")
        for name in signed:
            if name != "host" and self.headers.get(name) is None:
                return f"IncompleteSignatureException: '{name}' is named as a SignedHeader, but it does not exist in the HTTP request"
        if "x-amz-security-token" in self.headers and "x-amz-security-token" not in signed:
            return "InvalidSignatureException: x-amz-security-token must be signed"
        request, credentials = self.botocore_request(match, signed, secret)
        signer = LatticeSigV4(credentials, SERVICE, REGION, signed)
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        expected = signer.signature(string_to_sign, request)
        if expected != match["signature"]:
            return "InvalidSignatureException: The request signature we calculated does not match the signature you provided."
        return None

    def check_sigv4a(self, authorization):
        match = SIGV4A.match(authorization)
        if match is None:
            return "IncompleteSignatureException: Authorization header is malformed"
        if match["service"] != SERVICE:
            return "InvalidSignatureException: Credential should be scoped to a valid service"
        public = PUBLIC_KEYS.get(match["key"])
        if public is None:
            return "UnrecognizedClientException: The security token included in the request is invalid"
        signed = match["signed"].split(";")
        if "x-amz-region-set" not in signed:
            return "InvalidSignatureException: x-amz-region-set must be signed"
        region_set = [r.strip() for r in self.headers.get("x-amz-region-set", "").split(",")]
        if REGION not in region_set and "*" not in region_set:
            return "InvalidSignatureException: the region set does not include this region"
        if self.headers.get("x-amz-content-sha256") != "UNSIGNED-PAYLOAD":
            return "InvalidSignatureException: x-amz-content-sha256 must be UNSIGNED-PAYLOAD"
        request, credentials = self.botocore_request(match, signed, "")
        signer = LatticeSigV4(credentials, SERVICE, REGION, signed)
        canonical = signer.canonical_request(request)
        date = self.headers["x-amz-date"]
        string_to_sign = "\n".join([
            "AWS4-ECDSA-P256-SHA256",
            date,
            f"{date[:8]}/{SERVICE}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ])
        key = ec.EllipticCurvePublicNumbers(
            int(public["X"], 16), int(public["Y"], 16), ec.SECP256R1()
        ).public_key()
        try:
            key.verify(bytes.fromhex(match["signature"]), string_to_sign.encode(),
                       ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "InvalidSignatureException: The request signature we calculated does not match the signature you provided."
        return None

    def botocore_request(self, match, signed, secret):
        """The request as it arrived, over the headers it signed, for botocore."""
        path, _, query = self.path.partition("?")
        request = AWSRequest(
            method=self.command,
            url="https://" + strip_default_port(self.headers["Host"]) + path,
            params=urllib.parse.parse_qsl(query, keep_blank_values=True),
        )
        for name in signed:
            if name == "host":
                request.headers["host"] = strip_default_port(self.headers["Host"])
                continue
            for value in self.headers.get_all(name):
                request.headers[name] = value
        timestamp = datetime.datetime.strptime(self.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
        request.context["timestamp"] = timestamp.strftime("%Y%m%dT%H%M%SZ")
        credentials = Credentials(match["key"], secret, self.headers.get("x-amz-security-token"))
        return request, credentials

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        error = self.check()
        if error is None:
            status = 200
            payload = json.dumps({
                "verified": True,
                "method": self.command,
                "path": self.path,
                "access_key": (AUTHORIZATION.match(self.headers["Authorization"])
                               or SIGV4A.match(self.headers["Authorization"]))["key"],
                "authorization_count": len(self.headers.get_all("Authorization") or []),
                "headers": [[name.lower(), value] for name, value in self.headers.items()],
                "body_length": len(body),
            }).encode()
        else:
            status = 403
            payload = error.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

    def log_message(self, format, *args):
        sys.stderr.write("sigv4_upstream: " + (format % args) + "\n")


if __name__ == "__main__":
    port, cert, key, keys_file, REGION, SERVICE = sys.argv[1:7]
    with open(keys_file) as keys:
        KEYS = json.load(keys)
    PUBLIC_KEYS = {}
    if len(sys.argv) > 7:
        with open(sys.argv[7]) as keys:
            PUBLIC_KEYS = json.load(keys)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Verifier)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()
