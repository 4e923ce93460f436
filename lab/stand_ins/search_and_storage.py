#!/usr/bin/env python3
"""STAND-INS, not the real servers: es01 (Elasticsearch 8) and minio of the lab's RAGFlow compose project.

No Elasticsearch or MinIO image can be pulled in the lab, and the ragflow role needs only what these
mimic, on the ports the real services use inside the compose network:

es01 (port 9200) mimics how Elasticsearch 8 sizes its JVM heap: from -Xms/-Xmx in ES_JAVA_OPTS,
which is where the role puts the cap; without -Xmx, half of the container's memory limit (cgroup v2
memory.max), at most 31 GiB, as ES 8 does on its own. GET /_nodes/stats/jvm reports it under
nodes.<id>.jvm.mem (heap_init_in_bytes, heap_max_in_bytes) like the real node stats API. With
xpack security on, as RAGFlow runs it, every request needs the elastic user's password (401 otherwise).

minio (port 9000) answers GET /minio/health/live with 200, the check compose and RAGFlow use.

    search_and_storage.py es01|minio
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
ES_DEFAULT_HEAP_CEILING = 31 * 1024**3


def jvm_size(option: str, java_opts: str) -> int | None:
    """Bytes of the last -Xms/-Xmx in java_opts, as the JVM reads them (the last one wins)."""
    sizes = re.findall(r"(?:^|\s)-%s(\d+)([kKmMgG]?)(?=\s|$)" % option, java_opts)
    if not sizes:
        return None
    number, unit = sizes[-1]
    return int(number) * UNITS[unit.lower()]


def container_memory_limit() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as handle:
            value = handle.read().strip()
    except OSError:
        return None
    return None if value == "max" else int(value)


def es_heap() -> tuple[int, int]:
    java_opts = os.environ.get("ES_JAVA_OPTS", "")
    heap_max = jvm_size("Xmx", java_opts)
    if heap_max is None:
        limit = container_memory_limit() or 2 * 1024**3
        heap_max = min(limit // 2, ES_DEFAULT_HEAP_CEILING)
    return jvm_size("Xms", java_opts) or heap_max, heap_max


def es01_answer(path: str, authorised: bool) -> tuple[int, dict]:
    if not authorised:
        return 401, {
            "error": {"type": "security_exception", "reason": "missing authentication credentials"},
            "status": 401,
        }
    node = os.environ.get("node.name", "es01")
    if path == "/":
        return 200, {"name": node, "version": {"number": "8.11.3-lab-stand-in"}, "tagline": "You Know, for Search"}
    if path == "/_nodes/stats/jvm":
        heap_init, heap_max = es_heap()
        jvm = {"mem": {"heap_init_in_bytes": heap_init, "heap_max_in_bytes": heap_max}}
        return 200, {"cluster_name": "lab-stand-in", "nodes": {"stand-in-node": {"name": node, "jvm": jvm}}}
    return 404, {"error": "the es01 stand-in serves / and /_nodes/stats/jvm only", "status": 404}


def minio_answer(path: str, _authorised: bool) -> tuple[int, dict]:
    return (200, {}) if path == "/minio/health/live" else (404, {"error": "minio stand-in: health only"})


SERVICES = {"es01": (9200, es01_answer), "minio": (9000, minio_answer)}


def main() -> None:
    port, answer = SERVICES[sys.argv[1]]
    expected = "Basic " + base64.b64encode(b"elastic:" + os.environ.get("ELASTIC_PASSWORD", "").encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = answer(self.path.split("?")[0], self.headers.get("Authorization") == expected)
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    # As PID 1 of its container the process gets no default SIGTERM handling; stop at once on `docker stop`.
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(0))
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
