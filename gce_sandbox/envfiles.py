"""Files the sandbox writes into its state directory for clients:

  env.sh / env.json       the client environment (proxy, CA bundles, gcloud, every google.cloud auth
                          kind, google-api-python-client); see client_env() for what differs
  service-account.json    a real-format service-account key whose RSA key the sandbox made
  gcloud/properties       a gcloud configuration pointed at the sandbox (CLOUDSDK_CONFIG)
  admin-token             the secret the /_sandbox/ admin endpoints want (mode 0600)
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shlex
import stat
import tempfile

DEFAULT_PROJECT = "gpu-jupyter-sandbox"
# google.cloud marks access_token no_log, so Ansible masks this exact substring in all output:
# a long, distinctive value keeps that masking from mangling ordinary words.
STATIC_TOKEN = "sandbox-token-not-a-secret"


ADMIN_TOKEN_FILE = "admin-token"
ADMIN_TOKEN_HEADER = "X-Sandbox-Admin-Token"


def read_admin_token(state_dir: pathlib.Path) -> str | None:
    """The admin token in STATE/admin-token; None if absent or not a regular file of ours.

    Opened with O_NOFOLLOW: a symlink planted there is not read."""
    path = pathlib.Path(state_dir) / ADMIN_TOKEN_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            return None
        if st.st_mode & 0o077:
            os.fchmod(fh.fileno(), 0o600)
        token = fh.read().strip()
    return token or None


def ensure_admin_token(state_dir: pathlib.Path) -> str:
    """The admin token, made at the first start: 256 random bits in STATE/admin-token (0600).

    Written to a fresh temp file (O_EXCL|O_NOFOLLOW) that is then hard-linked into place, so a
    concurrent start or a planted symlink never gets a half-written or redirected token."""
    state_dir = pathlib.Path(state_dir)
    token = read_admin_token(state_dir)
    if token:
        return token
    path = state_dir / ADMIN_TOKEN_FILE
    if os.path.lexists(path):
        raise SystemExit(f"gce-sandbox: {path} is not a regular file of this user holding a token; "
                         "remove it and start again")
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".admin-token-")
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass        # another start won: use its token
    finally:
        os.unlink(tmp)
    token = read_admin_token(state_dir)
    if not token:
        raise SystemExit(f"gce-sandbox: could not read back {path}")
    return token


def ensure_service_account(state_dir: pathlib.Path, project: str) -> dict:
    path = state_dir / "service-account.json"
    if path.exists():
        return json.loads(path.read_text())
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email = f"ansible@{project}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": os.urandom(20).hex(),
        "private_key": pem,
        "client_email": email,
        "client_id": str(int.from_bytes(os.urandom(8), "big") % 10**21).rjust(21, "1"),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email.replace('@', '%40')}",
        "universe_domain": "googleapis.com",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=2)
    return info


def ensure_ssh_key(state_dir: pathlib.Path) -> pathlib.Path:
    """The operator's SSH key for container VMs, named like the one `gcloud compute ssh` makes
    (~/.ssh/google_compute_engine): provisioning puts its public half into ssh-keys metadata."""
    path = state_dir / "ssh" / "google_compute_engine"
    if path.exists():
        return path
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path.parent.mkdir(mode=0o700, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    (path.parent / "google_compute_engine.pub").write_bytes(public + b" gce-sandbox\n")
    return path


# Credentials, and why env.sh exports no GCP_ACCESS_TOKEN: google.cloud reads GCP_ACCESS_TOKEN,
# GCP_SERVICE_ACCOUNT_FILE, ... as fallbacks of every task's options, and refuses an access_token
# (or a service_account_file) with any other auth_kind. A shell that exports the token breaks every
# task written for serviceaccount, application or machineaccount. So env.sh exports what each kind
# finds on its own, and nothing a task did not ask for:
#   application     (GCP_AUTH_KIND's value, so tasks may omit auth_kind; google-auth, gcloud-less
#                    scripts, google-api-python-client): GOOGLE_APPLICATION_CREDENTIALS = the key below
#   serviceaccount  service_account_file: $GCE_SANDBOX_SERVICE_ACCOUNT_FILE
#   accesstoken     access_token: $GCE_SANDBOX_ACCESS_TOKEN
#   machineaccount  GCE_METADATA_HOST = the sandbox's metadata server (metadata_server.py)
# env.json also keeps GCP_AUTH_KIND=accesstoken and GCP_ACCESS_TOKEN for programs that take it as a
# whole for one accesstoken setup (the sandbox inventory's gcp_access_token, the test runner).
ENV_JSON_ONLY = {"GCP_AUTH_KIND": "accesstoken", "GCP_ACCESS_TOKEN": STATIC_TOKEN}


def client_env(state_dir: pathlib.Path, port: int, project: str, vms: str = "none") -> dict[str, str]:
    """What env.sh exports: every client in the README and every google.cloud auth kind."""
    url = f"http://127.0.0.1:{port}"
    bundle = str(state_dir / "ca-bundle.pem")
    key_file = str(state_dir / "service-account.json")
    return {
        "HTTPS_PROXY": url,
        "https_proxy": url,
        "NO_PROXY": "localhost,127.0.0.1",
        "no_proxy": "localhost,127.0.0.1",
        "REQUESTS_CA_BUNDLE": bundle,
        "SSL_CERT_FILE": bundle,
        "CURL_CA_BUNDLE": bundle,
        # google-api-python-client's httplib2 reads its CA bundle here (and needs PySocks to use
        # HTTPS_PROXY at all).
        "HTTPLIB2_CA_CERTS": bundle,
        "CLOUDSDK_CONFIG": str(state_dir / "gcloud"),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": f"{url}/compute/v1/",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_PROJECT": project,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "GCP_PROJECT": project,
        "GCP_AUTH_KIND": "application",
        "GOOGLE_APPLICATION_CREDENTIALS": key_file,
        "GCE_METADATA_HOST": f"127.0.0.1:{port}",
        "GCE_SANDBOX_ACCESS_TOKEN": STATIC_TOKEN,
        "GCE_SANDBOX_URL": url,
        "GCE_SANDBOX_STATE_DIR": str(state_dir),
        "GCE_SANDBOX_SERVICE_ACCOUNT_FILE": key_file,
        # "podman": every VM is a container the controller reaches over SSH with this key.
        "GCE_SANDBOX_VMS": vms,
        **({"GCE_SANDBOX_SSH_KEY": str(state_dir / "ssh" / "google_compute_engine")} if vms == "podman" else {}),
    }


def write_client_files(state_dir: pathlib.Path, port: int, project: str, vms: str = "none") -> dict[str, str]:
    env = client_env(state_dir, port, project, vms)
    (state_dir / "env.json").write_text(json.dumps(dict(env, **ENV_JSON_ONLY), indent=1, sort_keys=True) + "\n")
    lines = ["# Client environment for the gce-sandbox at " + env["GCE_SANDBOX_URL"],
             "# Use: . " + shlex.quote(str(state_dir / "env.sh")),
             "# google.cloud: any auth_kind works; application is the default (GCP_AUTH_KIND). For the others:",
             "#   serviceaccount: service_account_file: $GCE_SANDBOX_SERVICE_ACCOUNT_FILE",
             "#   accesstoken:    access_token: $GCE_SANDBOX_ACCESS_TOKEN",
             "#   machineaccount: nothing more (GCE_METADATA_HOST is the sandbox)",
             # A shell that sourced an older env.sh still has the token that breaks other auth kinds.
             "unset GCP_ACCESS_TOKEN GCP_SERVICE_ACCOUNT_FILE GCP_SERVICE_ACCOUNT_CONTENTS"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    (state_dir / "env.sh").write_text("\n".join(lines) + "\n")
    gdir = state_dir / "gcloud"
    (gdir / "configurations").mkdir(parents=True, exist_ok=True)
    props = (
        "[core]\n"
        f"project = {project}\n"
        "disable_usage_reporting = True\n"
        "[auth]\n"
        "disable_credentials = True\n"
        "[api_endpoint_overrides]\n"
        f"compute = {env['CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE']}\n"
        "[component_manager]\n"
        "disable_update_check = True\n"
        "[survey]\n"
        "disable_prompts = True\n"
    )
    (gdir / "configurations" / "config_default").write_text(props)
    (gdir / "active_config").write_text("default")
    return env
