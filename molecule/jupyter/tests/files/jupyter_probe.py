"""Talk to the Jupyter server the way JupyterLab does; run inside the container.

    jupyter_probe.py kernel NAME CODE   start kernel NAME, run CODE, print its result, stop it
    jupyter_probe.py xsrf               cookie login: POST without / with the XSRF header
    jupyter_probe.py trash NAME         create NAME through the API, then delete it

Prints one JSON object. Uses only the server venv's own libraries (websocket-client comes with
jupyter_server). The token is read from its file, never passed on a command line.
"""

import http.cookiejar
import json
import sys
import time
import urllib.error
import urllib.request
import uuid

import websocket

BASE = "http://127.0.0.1:8080"
with open("/etc/jupyter/service/token") as token_file:
    TOKEN = token_file.read().strip()
AUTH = {"Authorization": f"token {TOKEN}"}


def call(method, path, body=None, headers=None, opener=urllib.request.urlopen):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with opener(req) as resp:
            raw = resp.read()
            is_json = resp.headers.get_content_type() == "application/json"
            return resp.status, (json.loads(raw) if raw and is_json else None)
    except urllib.error.HTTPError as err:
        return err.code, None


def run_in_kernel(kernel_name, code):
    status, kernel = call("POST", "/api/kernels", {"name": kernel_name}, AUTH)
    assert status == 201, status
    ws = websocket.create_connection(f"ws://127.0.0.1:8080/api/kernels/{kernel['id']}/channels",
                                     header=[f"Authorization: token {TOKEN}"], timeout=90)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "probe", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False},
    }))
    result, error, deadline = None, None, time.monotonic() + 90
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "execute_result":
            result = msg["content"]["data"]["text/plain"]
        elif kind == "error":
            error = msg["content"]["evalue"]
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    ws.close()
    deleted, _ = call("DELETE", f"/api/kernels/{kernel['id']}", headers=AUTH)
    return {"kernel": kernel["name"], "result": result, "error": error, "deleted": deleted}


def xsrf():
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)).open
    login, _ = call("GET", f"/lab?token={TOKEN}", opener=opener)
    cookie = {c.name: c.value for c in jar}
    without, _ = call("POST", "/api/contents", {"type": "notebook"}, opener=opener)
    with_header, model = call("POST", "/api/contents", {"type": "notebook"},
                              {"X-XSRFToken": cookie.get("_xsrf", "")}, opener=opener)
    if model:
        call("DELETE", "/api/contents/" + model["path"], headers=AUTH)
    return {"login": login, "cookies": sorted(cookie), "post_without_xsrf": without,
            "post_with_xsrf": with_header}


def trash(name):
    created, _ = call("PUT", f"/api/contents/{name}",
                      {"type": "file", "format": "text", "content": "probe\n"}, AUTH)
    deleted, _ = call("DELETE", f"/api/contents/{name}", headers=AUTH)
    return {"created": created, "deleted": deleted}


if __name__ == "__main__":
    action = sys.argv[1]
    if action == "kernel":
        out = run_in_kernel(sys.argv[2], sys.argv[3])
    elif action == "xsrf":
        out = xsrf()
    else:
        out = trash(sys.argv[2])
    print(json.dumps(out))
