#!/usr/bin/env python3
"""Print how fast the GCE sandbox answers: plain HTTP vs through its HTTPS proxy.

    .venv/bin/python bench/sandbox_latency.py [N]
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time

import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from gce_sandbox.testing import SandboxProcess


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with SandboxProcess(pathlib.Path(tmp) / "gce") as sb:
            print(f"startup: {time.perf_counter() - started:.2f} s")
            sb.enable_compute()
            path = f"/compute/v1/projects/{sb.project}/zones/us-central1-a"
            plain = requests.Session()
            plain.trust_env = False
            t = time.perf_counter()
            for _ in range(n):
                plain.get(sb.url + path).raise_for_status()
            print(f"plain HTTP GET zone: {(time.perf_counter() - t) / n * 1000:.1f} ms/request ({n} requests)")
            proxied = requests.Session()
            proxied.trust_env = False
            proxied.proxies = {"https": sb.url}
            proxied.verify = sb.env["REQUESTS_CA_BUNDLE"]
            proxied.headers["Authorization"] = f"Bearer {sb.env['GCP_ACCESS_TOKEN']}"
            t = time.perf_counter()
            proxied.get("https://compute.googleapis.com" + path).raise_for_status()
            ms = (time.perf_counter() - t) * 1000
            print(f"first HTTPS request (CONNECT + TLS handshake + leaf cert): {ms:.0f} ms")
            t = time.perf_counter()
            for _ in range(n):
                proxied.get("https://compute.googleapis.com" + path).raise_for_status()
            print(f"HTTPS via proxy, kept-alive tunnel: {(time.perf_counter() - t) / n * 1000:.1f} ms/request")


if __name__ == "__main__":
    main()
