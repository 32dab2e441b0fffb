#!/usr/bin/env python3
"""Small-file load against a SeaweedFS filer's HTTP API.

Puts (HTTP PUT of the raw body to http://FILER/PREFIX/NNNNNNN) or gets
(HTTP GET of the same paths, body checked for length) COUNT files of SIZE
bytes with CONCURRENCY threads, each with its own keep-alive connection.
Prints one line in the same format as `dfs-sim loadgen`:

    loadgen op=put count=N concurrency=8 secs=S ops_per_s=X

Standard library only. Bounded: COUNT requests, each with a timeout.
Note: this is a Python client; with the GIL on a small machine the client
itself can be a bottleneck, so the figure is a lower bound for SeaweedFS.
"""

import argparse
import http.client
import os
import sys
import threading
import time
import urllib.parse


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filer", required=True, help="filer base URL, e.g. http://127.0.0.1:8888")
    ap.add_argument("--op", choices=["put", "get"], required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--prefix", default="small")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    a = ap.parse_args()

    url = urllib.parse.urlsplit(a.filer)
    host, port = url.hostname, url.port or 80
    base = url.path.rstrip("/") + "/" + a.prefix.strip("/")
    # Deterministic payload per file (first 8 bytes are the index).
    pad = os.urandom(a.size)

    next_i = [0]
    lock = threading.Lock()
    errors = []

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=a.timeout)
        while True:
            with lock:
                i = next_i[0]
                if i >= a.count or errors:
                    break
                next_i[0] += 1
            path = f"{base}/{i:07d}"
            try:
                if a.op == "put":
                    body = i.to_bytes(8, "little") + pad[8:]
                    conn.request("PUT", path, body=body[: a.size],
                                 headers={"Content-Type": "application/octet-stream"})
                    r = conn.getresponse()
                    r.read()
                    if r.status not in (200, 201):
                        raise RuntimeError(f"PUT {path}: HTTP {r.status}")
                else:
                    conn.request("GET", path)
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200 or len(data) != a.size:
                        raise RuntimeError(f"GET {path}: HTTP {r.status}, {len(data)} bytes")
            except Exception as e:  # record and stop every worker
                with lock:
                    errors.append(str(e))
                break
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    if errors:
        print(f"error: {errors[0]}", file=sys.stderr)
        return 1
    print(f"loadgen op={a.op} count={a.count} concurrency={a.concurrency} "
          f"secs={secs:.3f} ops_per_s={a.count / secs:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
