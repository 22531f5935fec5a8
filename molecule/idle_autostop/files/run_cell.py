"""Drive a kernel the way JupyterLab does: REST to start it, the websocket channel to execute.

    run_cell.py URL TOKEN_FILE start CODE   start a kernel, run CODE, return once it is busy;
                                            prints the kernel id (the cell keeps running)
    run_cell.py URL TOKEN_FILE shutdown ID  shut the kernel down

Runs with the Jupyter server's own interpreter (tornado is there; nothing else is needed).
"""

import asyncio
import datetime
import json
import sys
import urllib.request
import uuid

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


def api(url, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={
        "Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


async def start(url, token, code):
    kernel = api(url, token, "POST", "/api/kernels", {"name": "python3"})
    ws_url = url.replace("http://", "ws://", 1) + f"/api/kernels/{kernel['id']}/channels"
    ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "channel": "shell",
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "molecule",
                   "session": uuid.uuid4().hex, "version": "5.3",
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    while True:
        raw = await asyncio.wait_for(ws.read_message(), timeout=60)
        if raw is None:
            raise SystemExit("websocket closed before the cell started")
        msg = json.loads(raw)
        if (msg.get("msg_type") == "status"
                and msg.get("parent_header", {}).get("msg_id") == msg_id
                and msg["content"]["execution_state"] == "busy"):
            break
    ws.close()  # like closing the browser tab: the cell keeps running
    print(kernel["id"])


def main():
    url, token_file, command, arg = sys.argv[1:5]
    with open(token_file, encoding="utf-8") as fh:
        token = fh.read().strip()
    if command == "start":
        asyncio.run(start(url.rstrip("/"), token, arg))
    elif command == "shutdown":
        api(url.rstrip("/"), token, "DELETE", f"/api/kernels/{arg}")
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
