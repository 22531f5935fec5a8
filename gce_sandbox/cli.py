"""Command line: python -m gce_sandbox {serve,start,stop,status,log,fault,quota,preempt,age,reset,timing,env}."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .envfiles import ADMIN_TOKEN_HEADER, DEFAULT_PROJECT, read_admin_token

# The checkout this package lives in: `make sandbox` keeps the state in its .sandbox, so the CLI
# finds the running sandbox from any directory.
DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".sandbox"


def _server_info(state_dir: pathlib.Path) -> dict | None:
    try:
        return json.loads((state_dir / "server.json").read_text())
    except (OSError, ValueError):
        return None


def _admin(port: int, method: str, path: str, body: dict | None = None, timeout: float = 10,
           state_dir: pathlib.Path | None = None) -> dict:
    """Call an admin endpoint; all but GET health need the token in state_dir/admin-token."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    token = read_admin_token(state_dir) if state_dir is not None else None
    if token:
        headers[ADMIN_TOKEN_HEADER] = token
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_sandbox/{path}", data=data, method=method,
                                 headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            detail = json.loads(payload)
        except ValueError:
            detail = payload.decode(errors="replace")
        raise SystemExit(f"gce-sandbox: {method} /_sandbox/{path} failed ({exc.code}): {json.dumps(detail)}") from None


def _health(port: int) -> dict | None:
    try:
        return _admin(port, "GET", "health", timeout=2)
    except (OSError, SystemExit):
        return None


def running(state_dir: pathlib.Path) -> dict | None:
    info = _server_info(state_dir)
    if not info:
        return None
    health = _health(info["port"])
    if health and health.get("pid") == info.get("pid"):
        return info
    return None


def _offline_state(state_dir: pathlib.Path):
    """Edit the state of a stopped sandbox directly (faults and quotas persist there)."""
    from .server import Sandbox

    return Sandbox(state_dir, serving=False)


def _timing(args) -> dict | None:
    """--timing / --timing-scale (or GCE_SANDBOX_TIMING / _SCALE); None keeps the state's."""
    if args.timing is None and args.timing_scale is None:
        return None
    from .compute.timing import settings

    return settings(args.timing or "realistic", args.timing_scale)


def cmd_serve(args) -> int:
    from .server import serve

    serve(pathlib.Path(args.state_dir), args.port, args.project, args.vms, _timing(args))
    return 0


def start(state_dir: pathlib.Path, port: int = 0, project: str | None = None, timeout: float = 60,
          vms: str | None = None, timing: dict | None = None) -> dict:
    state_dir.mkdir(parents=True, exist_ok=True)
    info = running(state_dir)
    if info:
        return info
    (state_dir / "server.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "gce_sandbox", "serve", "--state-dir", str(state_dir), "--port", str(port)]
    if project:
        cmd += ["--project", project]
    if vms:
        cmd += ["--vms", vms]
    if timing:
        cmd += ["--timing", timing["profile"], "--timing-scale", str(timing["scale"])]
    env = dict(os.environ)
    pkg_root = str(pathlib.Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(state_dir / "server.log", "ab") as log:  # the server keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, close_fds=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gce-sandbox exited with {proc.returncode}; see {state_dir / 'server.log'}")
        info = _server_info(state_dir)
        if info and info.get("pid") == proc.pid and _health(info["port"]):
            return info
        time.sleep(0.1)
    raise SystemExit(f"gce-sandbox did not answer within {timeout}s; see {state_dir / 'server.log'}")


def cmd_start(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    info = start(state_dir, args.port, args.project, vms=args.vms, timing=_timing(args))
    print(f"gce-sandbox running: {info['url']} (pid {info['pid']}, project {info['project']})")
    print(f"client environment: . {state_dir / 'env.sh'}   (also {state_dir / 'env.json'})")
    return 0


def stop(state_dir: pathlib.Path, timeout: float = 10) -> bool:
    info = _server_info(state_dir)
    if not info:
        return False
    pid = int(info["pid"])
    health = _health(info["port"])
    if not health or health.get("pid") != pid:
        (state_dir / "server.json").unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # an exited daemon waits as a zombie until init reaps it: it is gone all the same
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def cmd_stop(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    print("stopped" if stop(state_dir) else "not running")
    if args.purge:
        purge_vms(state_dir)
    return 0


def purge_vms(state_dir: pathlib.Path) -> None:
    """Remove every container this state directory's sandbox started (by its label only)."""
    import shutil

    from .podman_vms import PodmanBackend

    if shutil.which("podman"):
        PodmanBackend({}, state_dir).purge()


def cmd_status(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    info = running(state_dir)
    if not info:
        print(f"gce-sandbox: not running (state dir {state_dir})")
        return 3
    state = _admin(info["port"], "GET", "state", state_dir=state_dir)
    print(f"gce-sandbox: running at {info['url']} (pid {info['pid']}), project {state['project']}")
    print("services enabled: " + ", ".join(sorted(k for k, v in state.get("services", {}).items()
                                                   if v == "ENABLED")))
    for zone, table in sorted(state.get("instances", {}).items()):
        for name, inst in sorted(table.items()):
            nic = (inst.get("networkInterfaces") or [{}])[0]
            ext = ",".join(ac.get("natIP", "-") for ac in nic.get("accessConfigs", [])) or "-"
            gpus = ",".join(f"{g['acceleratorCount']}x{g['acceleratorType'].rsplit('/', 1)[-1]}"
                            for g in inst.get("guestAccelerators", [])) or "-"
            print(f"  {zone}/{name}: {inst['status']} {inst['machineType'].rsplit('/', 1)[-1]} gpus={gpus} "
                  f"ip={nic.get('networkIP', '-')} ext={ext}")
    if state.get("faults"):
        print("faults: " + json.dumps(state["faults"]))
    return 0


def cmd_log(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    path = state_dir / "requests.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    if args.mutating:
        entries = [e for e in entries if e["mutating"]]
    for e in entries:
        if args.json:
            print(json.dumps(e, sort_keys=True))
            continue
        q = "&".join(f"{k}={v}" for k, v in (e.get("query") or {}).items())
        mark = "*" if e["mutating"] else " "
        print(f"{e['ts']} {mark} {e['status']} {e['method']:6} {e['host']}{e['path']}{'?' + q if q else ''}"
              f"{'  [' + e['method_id'] + ']' if e.get('method_id') else ''}")
        if args.bodies and e.get("body") is not None:
            print("    " + json.dumps(e["body"], sort_keys=True))
    return 0


def _fault_params(args) -> dict:
    params: dict = {}
    for key in ("zone", "region", "metric", "method", "path_regex", "count", "status", "seconds", "message", "code",
                "when", "outcome"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    if args.with_details or args.zones_available:
        params["with_details"] = True
    if args.zones_available:
        params["zones_available"] = [z for z in args.zones_available.split(",") if z]
    return params


def cmd_fault(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    info = running(state_dir)
    if args.fault_cmd == "add":
        params = _fault_params(args)
        if info:
            fault = _admin(info["port"], "POST", "faults", dict(params, kind=args.kind), state_dir=state_dir)
        else:
            sb = _offline_state(state_dir)
            fault = sb.faults.add(args.kind, params)
            sb.save()
        print(json.dumps(fault))
    elif args.fault_cmd == "clear":
        if info:
            _admin(info["port"], "DELETE", "faults", state_dir=state_dir)
        else:
            sb = _offline_state(state_dir)
            sb.faults.clear()
            sb.save()
        print("faults cleared")
    else:
        if info:
            faults = _admin(info["port"], "GET", "faults", state_dir=state_dir)["faults"]
        else:
            faults = _offline_state(state_dir).faults.all()
        print(json.dumps(faults, indent=1))
    return 0


def cmd_quota(args) -> int:
    from .server import set_quota

    state_dir = pathlib.Path(args.state_dir).resolve()
    info = running(state_dir)
    body = {"metric": args.metric, "limit": args.limit, "region": args.region}
    if info:
        print(json.dumps(_admin(info["port"], "POST", "quotas", body, state_dir=state_dir)))
    else:
        sb = _offline_state(state_dir)
        print(json.dumps(set_quota(sb.state, args.metric, args.limit, args.region, sb.lock, sb.save)))
    return 0


def cmd_preempt(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    info = running(state_dir)
    if not info:
        raise SystemExit("gce-sandbox: not running")
    print(json.dumps(_admin(info["port"], "POST", "preempt", {"zone": args.zone, "name": args.name},
                                  state_dir=state_dir)))
    return 0


def cmd_age(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    info = running(state_dir)
    if not info:
        raise SystemExit("gce-sandbox: not running")
    print(json.dumps(_admin(info["port"], "POST", "age", {"zone": args.zone, "name": args.name,
                                                          "seconds": args.seconds}, state_dir=state_dir)))
    return 0


def cmd_reset(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    info = running(state_dir)
    if info:
        _admin(info["port"], "POST", "reset", state_dir=state_dir)
    else:
        _offline_state(state_dir).reset()
    print("sandbox state reset")
    return 0


def cmd_timing(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    info = running(state_dir)
    if not info:
        raise SystemExit(f"gce-sandbox: not running (state dir {state_dir}); start it with --timing instead")
    if args.profile:
        body = {"profile": args.profile, "scale": args.scale}
        print(json.dumps(_admin(info["port"], "POST", "timing", body, state_dir=state_dir)))
    else:
        print(json.dumps(_admin(info["port"], "GET", "timing", state_dir=state_dir)))
    return 0


def cmd_env(args) -> int:
    state_dir = pathlib.Path(args.state_dir).resolve()
    print((state_dir / "env.sh").read_text(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gce_sandbox",
                                     description="Local Compute Engine sandbox: rehearse a deployment offline.")
    sub = parser.add_subparsers(dest="cmd", required=True)

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--state-dir", default=os.environ.get("GCE_SANDBOX_STATE_DIR", str(DEFAULT_STATE_DIR)),
                       help="directory holding the sandbox state (default: $GCE_SANDBOX_STATE_DIR, else the "
                            "checkout's .sandbox, where `make sandbox` keeps it)")
        p.set_defaults(func=func)
        return p

    timing_help = ("how long operations run: instant (DONE at the next request; the default) or realistic "
                   "(seconds, as on GCE, so every wait is exercised); default: $GCE_SANDBOX_TIMING, else what "
                   "the state directory had, else instant")

    def add_timing(p):
        p.add_argument("--timing", choices=["instant", "realistic"], default=os.environ.get("GCE_SANDBOX_TIMING"),
                       help=timing_help)
        p.add_argument("--timing-scale", type=float, default=None,
                       help="multiply realistic durations (0.1: ten times faster); implies --timing realistic")

    vms_help = ("what stands behind a VM: none (a record with addresses) or podman (a systemd container "
                "reached over SSH); default: what the state directory had, else none")
    p = add("serve", cmd_serve, "run in the foreground")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    p.add_argument("--project", default=None, help=f"project id (default {DEFAULT_PROJECT})")
    p.add_argument("--vms", choices=["none", "podman"], default=None, help=vms_help)
    add_timing(p)
    p = add("start", cmd_start, "run in the background and write env.sh / env.json")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--project", default=None)
    p.add_argument("--vms", choices=["none", "podman"], default=None, help=vms_help)
    add_timing(p)
    p = add("stop", cmd_stop, "stop the background server (the pid in server.json only); its VMs' containers stop")
    p.add_argument("--purge", action="store_true", help="also remove the containers of its VMs")
    add("status", cmd_status, "is it running, and what does it hold")
    p = add("log", cmd_log, "the API request log")
    p.add_argument("--mutating", action="store_true", help="only requests that change something")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--bodies", action="store_true", help="print request bodies too")

    p = add("fault", cmd_fault, "inject faults")
    fsub = p.add_subparsers(dest="fault_cmd", required=True)
    fa = fsub.add_parser("add", help="add a fault")
    fa.add_argument("kind", choices=["zone_exhausted", "quota_exceeded", "http_error", "slow_operations",
                                     "partial_insert", "disconnect", "flex_start"])
    fa.add_argument("--zone")
    fa.add_argument("--with-details", action="store_true",
                    help="zone_exhausted: ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
    fa.add_argument("--zones-available", help="zone_exhausted: comma-separated zonesAvailable hint")
    fa.add_argument("--region")
    fa.add_argument("--metric", help="quota_exceeded: metric named in the error (default CPUS)")
    fa.add_argument("--status", type=int, help="http_error: HTTP status (429, 503, ...)")
    fa.add_argument("--method", help="http_error, disconnect: only this HTTP method")
    fa.add_argument("--path-regex", dest="path_regex", help="http_error, disconnect: only paths matching this regex")
    fa.add_argument("--message", help="http_error: message for statuses other than 429/500/503")
    fa.add_argument("--code", help="partial_insert: the insert operation's error code (default "
                                   "ZONE_RESOURCE_POOL_EXHAUSTED); the VM and its disk stay behind, TERMINATED")
    fa.add_argument("--when", choices=["before", "after"],
                    help="disconnect: drop the connection before serving the request (default) or after")
    fa.add_argument("--seconds", type=float, help="slow_operations: delay before operations are DONE; flex_start: "
                                                  "how long a FLEX_START insert stays PENDING")
    fa.add_argument("--outcome", choices=["capacity", "no_capacity"],
                    help="flex_start: whether capacity comes at the end of the wait (default) or the insert fails")
    fa.add_argument("--count", type=int, help="how many times the fault fires (default: until cleared)")
    for name in ("clear", "list"):
        fsub.add_parser(name)
    for fp in fsub.choices.values():
        fp.add_argument("--state-dir", default=argparse.SUPPRESS)

    p = add("quota", cmd_quota, "set quota limits")
    qsub = p.add_subparsers(dest="quota_cmd", required=True)
    qs = qsub.add_parser("set")
    qs.add_argument("--state-dir", default=argparse.SUPPRESS)
    qs.add_argument("--region", help="region (omit for project-wide metrics such as GPUS_ALL_REGIONS)")
    qs.add_argument("--metric", required=True)
    qs.add_argument("--limit", type=float, required=True)

    p = add("preempt", cmd_preempt, "preempt a Spot/preemptible VM as GCE would")
    p.add_argument("--zone", required=True)
    p.add_argument("--name", required=True)
    p = add("age", cmd_age, "move a VM's start/stop timestamps into the past (run-time limits, stopped-VM policies)")
    p.add_argument("--zone", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--seconds", type=float, required=True)
    add("reset", cmd_reset, "forget every resource, fault and quota override")
    p = add("timing", cmd_timing, "show or change how long operations run, on the running sandbox")
    p.add_argument("profile", nargs="?", choices=["instant", "realistic"])
    p.add_argument("--scale", type=float, default=1.0, help="multiply realistic durations")
    add("env", cmd_env, "print the client environment (env.sh)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
