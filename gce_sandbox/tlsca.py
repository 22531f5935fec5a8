"""The sandbox's own certificate authority and the per-host certificates it signs.

Clients reach https://*.googleapis.com through the sandbox's CONNECT proxy; the sandbox
terminates TLS with a certificate for the requested host, signed by this CA. Clients trust
it through <state>/ca-bundle.pem: the system CA bundle with this CA appended (appended, not
replacing, so pip and other HTTPS traffic keep working with the same environment).
"""

from __future__ import annotations

import datetime
import os
import pathlib
import ssl
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                  "/etc/ssl/cert.pem")


def _write_private(path: pathlib.Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def system_bundle_text() -> str:
    """The CA bundle this environment already trusts."""
    candidates = []
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        if os.environ.get(var):
            candidates.append(os.environ[var])
    try:
        import certifi
        candidates.append(certifi.where())
    except ImportError:
        pass
    candidates.extend(SYSTEM_BUNDLES)
    for path in candidates:
        p = pathlib.Path(path)
        if p.is_file():
            text = p.read_text(encoding="utf-8", errors="replace")
            if "BEGIN CERTIFICATE" in text:
                return text
    return ""


class CertificateAuthority:
    def __init__(self, state_dir: pathlib.Path):
        self.dir = state_dir / "tls"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_cert_path = self.dir / "ca.pem"
        self.ca_key_path = self.dir / "ca-key.pem"
        self.bundle_path = state_dir / "ca-bundle.pem"
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        if not (self.ca_cert_path.exists() and self.ca_key_path.exists()):
            self._create_ca()
        self.ca_key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), None)
        self.ca_cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        self._write_bundle()

    def _create_ca(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gce-sandbox"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "gce-sandbox local CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256()))
        _write_private(self.ca_key_path, _key_pem(key))
        self.ca_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _write_bundle(self) -> None:
        ca_pem = self.ca_cert_path.read_text()
        base = system_bundle_text()
        if ca_pem in base:   # environment already points at an older copy of this bundle
            text = base
        else:
            text = base.rstrip("\n") + ("\n" if base else "") + "# gce-sandbox local CA\n" + ca_pem
        self.bundle_path.write_text(text)

    def _leaf(self, host: str) -> tuple[pathlib.Path, pathlib.Path]:
        safe = host.replace("*", "_wildcard")
        cert_path, key_path = self.dir / f"{safe}.pem", self.dir / f"{safe}-key.pem"
        if cert_path.exists() and key_path.exists():
            return cert_path, key_path
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                .issuer_name(self.ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=825))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                               critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) +
                              self.ca_cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    def context_for(self, host: str) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                cert_path, key_path = self._leaf(host)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(str(cert_path), str(key_path))
                ctx.set_alpn_protocols(["http/1.1"])
                self._contexts[host] = ctx
            return ctx
