"""TLS for the tests: a test certificate authority and server certificates made with the `openssl`
command, client contexts that trust it, and certificate fingerprints."""
from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess

from herald_test import HOST


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_ca(directory):
    """A test certificate authority (P-256); returns (cert, key) paths."""
    cert = os.path.join(directory, "ca.crt")
    key = os.path.join(directory, "ca.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=herald test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_cert(directory, name, ca):
    """A server certificate for localhost and 127.0.0.1 signed by `ca`; returns (cert, key)."""
    cert = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    csr = os.path.join(directory, f"{name}.csr")
    ext = os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=CA:FALSE\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key


def make_test_certs(directory: str) -> dict:
    """A CA, a server certificate for localhost/127.0.0.1 and a second key of the same CA (for a
    key that does not match): {"dir", "ca", "cafile", "cert", "key", "other_key"}."""
    ca = make_ca(directory)
    cert, key = make_cert(directory, "server", ca)
    _, other_key = make_cert(directory, "other", ca)
    return {"dir": directory, "ca": ca, "cafile": ca[0], "cert": cert, "key": key,
            "other_key": other_key}


def https(server, path):
    return f"https://localhost:{server.port}{path}"


def client_ctx(cafile):
    """A client context that verifies against the test CA (no verification turned off)."""
    return ssl.create_default_context(cafile=cafile)


def peer_fingerprint(port, cafile):
    ctx = client_ctx(cafile)
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def fingerprint_of(cert_path):
    der = ssl.PEM_cert_to_DER_cert(open(cert_path).read())
    return hashlib.sha256(der).hexdigest()
