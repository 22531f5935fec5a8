"""Verify the jupyter role the way a user meets it: service, port, auth, kernels, browser."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ARTIFACTS = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", HERE.parents[2])) / "artifacts" / "jupyter"
VENV = "/opt/jupyter/venv"
TOKEN_FILE = "/etc/jupyter/service/token"
CONFIG_FILE = "/etc/jupyter/service/jupyter_server_config.py"
PORT = 8080
OLD_TOKEN = "planted-by-jupyter-0123456789abcdefghijklmnopqrstuv"
TUNNEL_USER = "molecule-tunnel"


@pytest.fixture(scope="module")
def container(host):
    return host.backend.name


@pytest.fixture(scope="module")
def token(host):
    return host.file(TOKEN_FILE).content_string.strip()


@pytest.fixture(scope="module")
def probe(host, container):
    """Run files/jupyter_probe.py with the server venv's python inside the container."""
    subprocess.run(["podman", "cp", str(HERE / "files" / "jupyter_probe.py"),
                    f"{container}:/root/jupyter_probe.py"], check=True)

    def run(*args):
        quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in args)
        out = host.check_output(f"{VENV}/bin/python /root/jupyter_probe.py {quoted}")
        return json.loads(out)

    yield run
    host.run("rm -f /root/jupyter_probe.py")


def http_status(host, url, token=None):
    header = f", headers={{'Authorization': 'token {token}'}}" if token else ""
    code = (
        "import urllib.request as u, urllib.error as e\n"
        f"try: print(u.urlopen(u.Request('{url}'{header})).status)\n"
        "except e.HTTPError as x: print(x.code)\n"
    )
    return int(host.check_output(f"python3 -c \"{code}\""))


# --- The service -------------------------------------------------------------------------------

def test_unit_is_active_enabled_and_ours(host):
    service = host.service("jupyter")
    assert service.is_running
    assert service.is_enabled
    # The image's /lib/systemd/system/jupyter.service is shadowed by the role's unit.
    fragment = host.check_output("systemctl show -P FragmentPath jupyter")
    assert fragment == "/etc/systemd/system/jupyter.service"
    main_pid = host.check_output("systemctl show -P MainPID jupyter")
    assert host.check_output(f"cat /proc/{main_pid}/comm") == "jupyter-lab"
    assert host.check_output(f"stat -c %U /proc/{main_pid}") == "jupyter"


def test_image_server_is_gone(host):
    assert host.run("pgrep -f '[h]ttp.server 8080'").rc == 1


def test_unit_is_sandboxed_without_hiding_gpus(host):
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show jupyter -p NoNewPrivileges -p ProtectSystem -p PrivateDevices -p Restart").splitlines())
    assert props == {"NoNewPrivileges": "yes", "ProtectSystem": "full", "PrivateDevices": "no",
                     "Restart": "on-failure"}


# --- The port ----------------------------------------------------------------------------------

def test_listens_on_loopback_only(host):
    assert host.socket(f"tcp://127.0.0.1:{PORT}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{PORT}").is_listening
    assert not host.socket(f"tcp://:::{PORT}").is_listening
    local = host.check_output(f"ss -Hltn 'sport = :{PORT}'").split()
    addresses = [f for f in local if f.endswith(f":{PORT}")]
    assert addresses == [f"127.0.0.1:{PORT}"], local


# --- Authentication ----------------------------------------------------------------------------

def test_token_file_is_private(host, token):
    f = host.file(TOKEN_FILE)
    assert (f.user, f.group, f.mode) == ("root", "jupyter", 0o640)
    assert len(token) >= 32
    # prepare.yml left a token file of jupyter's own, as earlier versions of the role did:
    # replaced, never kept.
    assert token != OLD_TOKEN
    config = host.file(CONFIG_FILE)
    assert (config.user, config.group, config.mode) == ("root", "jupyter", 0o640)
    assert token not in config.content_string


def test_notebook_code_cannot_tamper_with_the_token(host, token):
    """As jupyter (what notebook code runs as): read yes, rewrite, re-mode, replace no."""
    assert host.check_output(f"runuser -u jupyter -- cat {TOKEN_FILE}") == token
    for attempt in (f"sh -c ': > {TOKEN_FILE}'", f"chmod 0644 {TOKEN_FILE}",
                    f"mv {TOKEN_FILE} {TOKEN_FILE}.old", f"ln -sf /dev/null {TOKEN_FILE}",
                    f"touch {os.path.dirname(TOKEN_FILE)}/new"):
        assert host.run(f"runuser -u jupyter -- {attempt}").rc != 0, attempt
    f = host.file(TOKEN_FILE)
    assert (f.user, f.mode, f.content_string.strip()) == ("root", 0o640, token)
    d = host.file(os.path.dirname(TOKEN_FILE))
    assert (d.user, d.group, d.mode) == ("root", "jupyter", 0o750)


def test_token_never_reaches_the_journal(host, token):
    journal = host.check_output("journalctl -u jupyter --no-pager -o cat")
    assert "token=..." in journal
    assert token not in journal


def test_api_refuses_without_token_and_answers_with_it(host, token):
    assert http_status(host, f"http://127.0.0.1:{PORT}/api/status") in (401, 403)
    assert http_status(host, f"http://127.0.0.1:{PORT}/api/status", token="wrong" * 8) in (401, 403)
    assert http_status(host, f"http://127.0.0.1:{PORT}/api/status", token=token) == 200


def _get_json(host, url, token):
    code = ("import json, urllib.request as u\n"
            f"r = u.urlopen(u.Request('{url}', headers={{'Authorization': 'token {token}'}}))\n"
            "print(r.read().decode())\n")
    return host.check_output(f"python3 -c \"{code}\"")


def test_no_news_prompt_and_no_news_feed(host, token):
    """JupyterLab neither asks new users about its news (fetchNews defaults to "false" through
    overrides.d) nor fetches the feed (LabApp.news_url None: the page config says disabled)."""
    settings = json.loads(_get_json(
        host, f"http://127.0.0.1:{PORT}/lab/api/settings/@jupyterlab/apputils-extension:notification", token))
    assert settings["schema"]["properties"]["fetchNews"]["default"] == "false"
    assert settings["schema"]["properties"]["checkForUpdates"]["default"] is False
    page = _get_json(host, f"http://127.0.0.1:{PORT}/lab", token)
    # <script id="jupyter-config-data" type="application/json">{...}</script>
    data = page.split('id="jupyter-config-data"', 1)[1].split(">", 1)[1].split("</script>", 1)[0]
    config = json.loads(data)
    assert config["news"] == {"disabled": True}


def test_xsrf_is_enforced_for_cookie_sessions(probe):
    out = probe("xsrf")
    assert out["login"] == 200
    assert "_xsrf" in out["cookies"]
    assert out["post_without_xsrf"] == 403
    assert out["post_with_xsrf"] == 201


# --- Kernels and files -------------------------------------------------------------------------

def test_kernel_executes_code(probe):
    out = probe("kernel", "python3", "1+1")
    assert out == {"kernel": "python3", "result": "2", "error": None, "deleted": 204}


def test_extra_kernel_runs_in_its_own_venv(probe):
    out = probe("kernel", "extra", "import sys; sys.prefix")
    assert out["result"] == "'/opt/jupyter/kernels/extra'", out


def test_delete_goes_to_trash(host, probe):
    out = probe("trash", "trash-probe.txt")
    assert out == {"created": 201, "deleted": 204}
    trashed = host.file("/home/jupyter/.local/share/Trash/files/trash-probe.txt")
    assert trashed.exists
    host.run("rm -f /home/jupyter/.local/share/Trash/files/trash-probe.txt "
             "/home/jupyter/.local/share/Trash/info/trash-probe.txt.trashinfo")


# --- In a browser, through an SSH tunnel, as users reach it ------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tunnel(host, container):
    """`ssh -N -L PORT:localhost:8080` to the container's sshd with a throwaway key."""
    if shutil.which("ssh") is None:
        pytest.skip("ssh client is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="jupyter-tunnel-"))
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = key.with_suffix(".pub").read_text().strip()
    host.check_output(
        f"id {TUNNEL_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {TUNNEL_USER}; "
        f"install -d -m 0700 -o {TUNNEL_USER} -g {TUNNEL_USER} /home/{TUNNEL_USER}/.ssh; "
        f"echo '{pub}' > /home/{TUNNEL_USER}/.ssh/authorized_keys; "
        f"chown {TUNNEL_USER}: /home/{TUNNEL_USER}/.ssh/authorized_keys"
    )
    address = subprocess.run(
        ["podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", container],
        check=True, capture_output=True, text=True).stdout.strip()
    local_port = free_port()
    ssh = subprocess.Popen(
        ["ssh", "-N", "-i", str(key), "-L", f"{local_port}:localhost:{PORT}",
         "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "StrictHostKeyChecking=no",
         "-o", f"UserKnownHostsFile={workdir}/known_hosts", "-o", "ConnectTimeout=10",
         f"{TUNNEL_USER}@{address}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ssh.poll() is not None:
            pytest.fail(f"ssh tunnel exited {ssh.returncode}: {ssh.stderr.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", local_port)) == 0:
                break
        time.sleep(0.3)
    else:
        ssh.terminate()
        pytest.fail("ssh tunnel did not open within 30 s")
    yield local_port
    ssh.terminate()
    ssh.wait(timeout=10)
    host.run(f"userdel -r {TUNNEL_USER}")
    shutil.rmtree(workdir, ignore_errors=True)


def test_tunnel_reaches_the_api_from_outside(tunnel, token):
    url = f"http://127.0.0.1:{tunnel}/api/status"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code in (401, 403)
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert "started" in json.loads(resp.read())


def chromium(*args, timeout=120):
    # The browser binary itself: Debian's /usr/bin/chromium wrapper only adds desktop settings.
    direct = Path("/usr/lib/chromium/chromium")
    exe = str(direct) if direct.exists() else shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (scripts/bootstrap --tests installs it)")
    with tempfile.TemporaryDirectory(prefix="jupyter-chromium-") as profile:
        return subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout, check=False)


def test_browser_shows_the_jupyterlab_launcher(tunnel, token):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"http://localhost:{tunnel}/lab?token={token}"
    shot = ARTIFACTS / "jupyterlab-launcher.png"
    shot.unlink(missing_ok=True)
    # The launcher is drawn by JavaScript after the page loaded: give it virtual time to run.
    # One browser run writes both the DOM (stdout) and the screenshot.
    dom = chromium("--virtual-time-budget=20000", "--window-size=1280,800", f"--screenshot={shot}",
                   "--dump-dom", url)
    (ARTIFACTS / "lab.html").write_text(dom.stdout.replace(token, "<token>"))
    assert "jp-Launcher" in dom.stdout, dom.stderr[-2000:]
    assert "jp-LauncherCard" in dom.stdout
    assert "Python 3" in dom.stdout and "Python (extra venv)" in dom.stdout
    assert shot.stat().st_size > 10_000


# --- Settings no drop-in and no notebook can change --------------------------------------------
# Last in the file: these restart the server.

CONF_D = "/etc/jupyter/service/conf.d"
USER_CONFIG_DIR = "/etc/jupyter/service/user"


def test_dropin_directories_are_roots_alone(host):
    for path in (CONF_D, USER_CONFIG_DIR):
        d = host.file(path)
        assert d.is_directory, path
        assert (d.user, d.group, d.mode) == ("root", "root", 0o755), path
        assert host.run(f"runuser -u jupyter -- test -w {path}").rc != 0, path
    unit_env = host.check_output("systemctl show -P Environment jupyter")
    assert f"JUPYTER_CONFIG_DIR={USER_CONFIG_DIR}" in unit_env


def test_guarded_settings_are_applied_after_the_dropins(host):
    config = host.file(CONFIG_FILE).content_string
    assert config.index("for _dropin in sorted(") < config.index("_guard(get_config())")
    assert config.rstrip().endswith("_guard(get_config())  # noqa: F821")


def wait_for_api(host, token, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.run(f"ss -Hltn 'sport = :{PORT}' | grep -q LISTEN").rc == 0:
            try:
                if http_status(host, f"http://127.0.0.1:{PORT}/api/status", token=token) == 200:
                    return
            except AssertionError:
                pass
        time.sleep(1)
    pytest.fail("jupyter did not answer /api/status after the restart:\n"
                + host.run("journalctl -u jupyter --no-pager -n 40 -o cat").stdout)


def test_dropin_and_home_config_cannot_open_the_server(host, token, probe):
    """A drop-in and ~/.jupyter config (which notebook code can write) try to expose the server."""
    override = (
        'c = get_config()\n'
        'c.ServerApp.ip = "0.0.0.0"\n'
        'c.NotebookApp.ip = "0.0.0.0"\n'
        'c.Application.ip = "0.0.0.0"\n'
        'c.ServerApp.allow_origin = "*"\n'
        'c.ServerApp.disable_check_xsrf = True\n'
        'c.IdentityProvider.token = ""\n'
        'c.ServerApp.allow_root = True\n'
    )
    try:
        host.check_output(f"cat > {CONF_D}/99-molecule-override.py <<'EOF'\n{override}EOF\n"
                          f"chmod 0644 {CONF_D}/99-molecule-override.py")
        home = "/home/jupyter/.jupyter"
        host.check_output(
            f"runuser -u jupyter -- sh -c 'mkdir -p {home} && cat > {home}/jupyter_config.py && "
            "for f in jupyter_lab_config.py jupyter_server_config.py jupyter_notebook_config.py; do "
            f"cp {home}/jupyter_config.py {home}/$f; done' <<'EOF'\n{override}EOF")
        host.check_output("systemctl restart jupyter")
        wait_for_api(host, token)
        local = host.check_output(f"ss -Hltn 'sport = :{PORT}'").split()
        assert [f for f in local if f.endswith(f":{PORT}")] == [f"127.0.0.1:{PORT}"], local
        assert http_status(host, f"http://127.0.0.1:{PORT}/api/status") in (401, 403)
        out = probe("xsrf")
        assert out["post_without_xsrf"] == 403, out
    finally:
        host.run(f"rm -f {CONF_D}/99-molecule-override.py /home/jupyter/.jupyter/jupyter_config.py "
                 "/home/jupyter/.jupyter/jupyter_lab_config.py /home/jupyter/.jupyter/jupyter_server_config.py "
                 "/home/jupyter/.jupyter/jupyter_notebook_config.py")
        host.run("systemctl restart jupyter")
        wait_for_api(host, token)
