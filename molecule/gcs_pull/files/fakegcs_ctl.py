#!/usr/bin/env python3
"""Start or stop the fake-gcs-server this scenario pulls from.

    fakegcs_ctl.py start STATE_DIR HOST     seed the bucket, serve https on HOST, write state.json
    fakegcs_ctl.py stop STATE_DIR           stop the server started from STATE_DIR (its own pid)

The server runs in a detached child that stops itself after LIFETIME_S even if nobody calls
stop (a crashed run must not leave it behind). The seed is made from a fixed random seed, so
tests can recompute every object's bytes from the seed directory kept next to the state.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from tests.support.fakegcs import FakeGcs  # noqa: E402

BUCKET = "gcs-pull-test"
SMALL_FILES, SMALL_SIZE = 200, 4096
LARGE_FILES, LARGE_SIZE = 2, 30 * 1024 * 1024
LIFETIME_S = 20 * 60


def seed(data_dir: Path) -> None:
    rng = random.Random(20240601)
    root = data_dir / BUCKET
    for i in range(SMALL_FILES):
        path = root / "dataset" / "small" / f"part-{i // 50}" / f"sample-{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(SMALL_SIZE))
    for i in range(LARGE_FILES):
        path = root / "dataset" / "large" / f"shard-{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(LARGE_SIZE))
    # Excluded by the scenario's `exclude: ["*.tmp"]`: must never reach the VM.
    (root / "dataset" / "scratch.tmp").write_bytes(b"half-written upload\n")
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "models" / "model.pt").write_bytes(rng.randbytes(1024 * 1024))
    (root / "models" / "config.json").write_text('{"layers": 12}\n')


def serve(state_dir: Path, host: str) -> None:
    data = state_dir / "seed"
    if not data.exists():
        seed(data)
    gcs = FakeGcs(state_dir / "server", host=host, scheme="https", data_dir=data)
    gcs.start()
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    state = {
        "bucket": BUCKET,
        "https_url": gcs.https_url,
        "ca_file": str(gcs.ca_file),
        "storage_root": str(gcs.root),
        "seed_dir": str(data),
        "pid": os.getpid(),
        "server_pid": gcs.pid,
    }
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_dir / "state.json")
    deadline = time.monotonic() + LIFETIME_S
    try:
        while not stop["now"] and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        gcs.stop()
        (state_dir / "state.json").unlink(missing_ok=True)


def stop(state_dir: Path) -> None:
    state_file = state_dir / "state.json"
    if not state_file.exists():
        return
    pid = json.loads(state_file.read_text())["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        state_file.unlink(missing_ok=True)
        return
    for _ in range(100):
        if not state_file.exists():
            return
        time.sleep(0.1)


def start(state_dir: Path, host: str) -> None:
    stop(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "ctl.log", "ab")  # noqa: SIM115 - handed to the child
    subprocess.Popen(
        [sys.executable, __file__, "serve", str(state_dir), host],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )
    for _ in range(600):
        if (state_dir / "state.json").exists():
            print((state_dir / "state.json").read_text())
            return
        time.sleep(0.1)
    sys.exit(f"fake-gcs-server did not start; see {state_dir / 'ctl.log'}")


if __name__ == "__main__":
    action, directory = sys.argv[1], Path(sys.argv[2])
    if action == "start":
        start(directory, sys.argv[3])
    elif action == "serve":
        serve(directory, sys.argv[3])
    elif action == "stop":
        stop(directory)
    else:
        sys.exit(__doc__)
