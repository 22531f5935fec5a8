"""The sandbox's own certificate authority and the per-host certificates it signs.

Clients reach https://*.googleapis.com through the sandbox's CONNECT proxy; the sandbox
terminates TLS with a certificate for the requested host, signed by this CA. Clients trust
it through <state>/ca-bundle.pem: the system CA bundle with this CA appended (appended, not
replacing, so pip and other HTTPS traffic keep working with the same environment).
"""

from __future__ import annotations

import datetime
import errno
import os
import pathlib
import re
import ssl
import stat
import tempfile
import threading
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                  "/etc/ssl/cert.pem")


# A DNS name in the form a CONNECT request may carry: lowercase labels of letters, digits and
# inner hyphens, separated by single dots. No path separators, no "..", no wildcards.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_RE = re.compile(rf"(?:{_LABEL}\.)+{_LABEL}")


class InvalidHostError(ValueError):
    """A host name the sandbox will not make a certificate for."""


def check_host(host: str, allowed: Iterable[str] | None = None) -> str:
    """`host` if it is a plain DNS name (and one of `allowed`, when given); else InvalidHostError.

    Checked before the name comes near the file system: certificate files are named after it."""
    if not isinstance(host, str) or len(host) > 253 or not HOST_RE.fullmatch(host) or ".." in host \
            or "/" in host or "\\" in host or "\0" in host:
        raise InvalidHostError(f"not a valid host name: {host!r}")
    if allowed is not None and host not in allowed:
        raise InvalidHostError(f"the sandbox does not serve {host!r}")
    return host


def _write_private(path: pathlib.Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` without ever following a link planted there.

    The data goes to a fresh file in the same directory (mkstemp: O_CREAT|O_EXCL|O_NOFOLLOW, mode
    0600) that then replaces `path`: os.replace swaps out a symlink itself, never what it points at."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _read_regular(path: pathlib.Path) -> bytes | None:
    """The bytes of `path` if it is a regular file of ours; None if absent, a symlink or anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
            return None
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            return None
        return fh.read()


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
    """`hosts`: the only names it signs certificates for (None: any valid DNS name)."""

    def __init__(self, state_dir: pathlib.Path, hosts: Iterable[str] | None = None):
        self.dir = state_dir / "tls"
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.dir.is_symlink() or not self.dir.is_dir():
            raise SystemExit(f"gce-sandbox: {self.dir} must be a directory, not a link")
        os.chmod(self.dir, 0o700)
        self.hosts = frozenset(hosts) if hosts is not None else None
        self.ca_cert_path = self.dir / "ca.pem"
        self.ca_key_path = self.dir / "ca-key.pem"
        self.bundle_path = state_dir / "ca-bundle.pem"
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        key_pem, cert_pem = _read_regular(self.ca_key_path), _read_regular(self.ca_cert_path)
        if key_pem is None or cert_pem is None:
            key_pem, cert_pem = self._create_ca()
        self.ca_key = serialization.load_pem_private_key(key_pem, None)
        self.ca_cert = x509.load_pem_x509_certificate(cert_pem)
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
        key_pem, cert_pem = _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)
        _write_private(self.ca_key_path, key_pem)
        _write_private(self.ca_cert_path, cert_pem, 0o644)
        return key_pem, cert_pem

    def _write_bundle(self) -> None:
        ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        base = system_bundle_text()
        if ca_pem in base:   # environment already points at an older copy of this bundle
            text = base
        else:
            text = base.rstrip("\n") + ("\n" if base else "") + "# gce-sandbox local CA\n" + ca_pem
        _write_private(self.bundle_path, text.encode(), 0o644)

    def _leaf(self, host: str) -> tuple[pathlib.Path, pathlib.Path]:
        host = check_host(host, self.hosts)
        # Only [a-z0-9.-] and no "..": the name stays a file name inside self.dir.
        cert_path, key_path = self.dir / f"leaf-{host}.pem", self.dir / f"leaf-{host}-key.pem"
        if cert_path.parent != self.dir or key_path.parent != self.dir:
            raise InvalidHostError(f"not a valid host name: {host!r}")
        if _read_regular(cert_path) is not None and _read_regular(key_path) is not None:
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
        _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM) +
                       self.ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cert_path, key_path

    def context_for(self, host: str) -> ssl.SSLContext:
        """Raises InvalidHostError for a name it will not sign (nothing is written then)."""
        check_host(host, self.hosts)
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                cert_path, key_path = self._leaf(host)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(str(cert_path), str(key_path))
                ctx.set_alpn_protocols(["http/1.1"])
                self._contexts[host] = ctx
            return ctx
