"""The jupyter role turns JupyterLab's news off: no "receive official Jupyter news?" prompt for a
new user, no feed fetched from the internet.

JupyterLab (4.x) asks while its `fetchNews` setting (@jupyterlab/apputils-extension:notification)
is "none", the default; `LabApp.news_url = None` stops the server fetching the feed (and the page
config then says news is disabled) but not the prompt. So the role sets both: the server config
line, and the setting's default through the lab's overrides.d. Rendered here with the role's own
defaults and vars; molecule/jupyter checks that the running server serves both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "jupyter"
CONFIG = "etc/jupyter/service/jupyter_server_config.py.j2"
OVERRIDES = "opt/jupyter/venv/share/jupyter/lab/settings/overrides.d/jupyter-role.json.j2"


def _render(tmp_path: Path, **extra) -> dict[str, str]:
    out = tmp_path / "out"
    out.mkdir()
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "tasks": [{"name": f"Render {name}", "ansible.builtin.template": {
            "src": str(ROLE / "templates" / src), "dest": str(out / name), "mode": "0600"}}
            for name, src in (("config.py", CONFIG), ("overrides.json", OVERRIDES))],
    }]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
                           "-e", json.dumps({"ansible_python_interpreter": sys.executable, **extra}),
                           str(tmp_path / "play.yml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {p.name: p.read_text() for p in out.iterdir()}


def test_rendered_config_turns_the_news_off(tmp_path):
    rendered = _render(tmp_path, jupyter_server_extra_config={"LabApp": {"news_url": "https://feed.example/atom.xml"}})
    config = rendered["config.py"]
    assert "c.LabApp.news_url = None\n" in config
    # jupyter_server_extra_config comes later, so a user who wants the feed can have it back.
    assert config.index("c.LabApp.news_url = None") < config.index('c.LabApp.news_url = "https://feed.example/atom.xml"')
    compile(config, "jupyter_server_config.py", "exec")
    overrides = json.loads(rendered["overrides.json"])
    assert overrides == {"@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false", "checkForUpdates": False}}


def test_overrides_reach_the_venv_jupyterlab_reads():
    """The task writes the overrides where JupyterLab reads them: {sys.prefix}/share/jupyter/lab/
    settings/overrides.d (jupyterlab_server's app_settings_dir), for the role's venv."""
    tasks = yaml.safe_load((ROLE / "tasks" / "configure.yml").read_text())
    task = next(t for t in tasks if t.get("name") == "Configure | Turn JupyterLab's news prompt off")
    assert task["ansible.builtin.template"]["src"] == OVERRIDES
    assert task["ansible.builtin.template"]["dest"] == (
        "{{ jupyter_venv }}/share/jupyter/lab/settings/overrides.d/jupyter-role.json")
