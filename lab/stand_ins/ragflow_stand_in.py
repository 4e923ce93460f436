#!/usr/bin/env python3
"""STAND-IN, not RAGFlow: the ragflow-cpu service of the lab's compose project.

It serves the fake RAGFlow API of testkit/ragflow/fake_ragflow_datasets.py (login, tokens,
model providers, and the /api/v1 datasets, documents, retrieval and chats that ragflow_e2e checks;
compose mounts that package at /opt/double/ragflow_double) on port 9380,
RAGFlow's API port, with what the real server takes from its deployment:

- the login key pair from /ragflow/conf/private.pem, where RAGFlow keeps its own;
- one user, admin@ragflow.io with the password "admin" and no access_token, as a new RAGFlow's admin
  server creates it (admin/server/auth.py init_default_admin): every fresh lab walks the first-boot path;
- RAGFLOW_STAND_IN_API_GENERATION: v0.27 (default) or v0.24;
- RAGFLOW_STAND_IN_SERVING: "<base URL>=<model>,<model>", the models that answer RAGFlow's test call;
- a healthz that, like RAGFlow's, checks its components for real: it connects to the mysql, redis,
  document engine and minio services (hosts and ports from the project's .env).
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from cryptography.hazmat.primitives import serialization

sys.path.insert(0, "/opt/double")
from ragflow_double.fake_ragflow_datasets import FakeRagflowDatasets

API_PORT = 9380


def reachable(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=2):
            return "ok"
    except OSError:
        return "nok"


class RagflowStandIn(FakeRagflowDatasets):
    def healthz(self, tenant, body):
        env = os.environ
        doc_engine = (
            ("es01", 9200) if env.get("DOC_ENGINE", "elasticsearch") == "elasticsearch" else ("opensearch01", 9201)
        )
        self.health.update(
            db=reachable(env.get("MYSQL_HOST", "mysql"), 3306),
            redis=reachable(env.get("REDIS_HOST", "redis"), 6379),
            doc_engine=reachable(*doc_engine),
            storage=reachable(env.get("MINIO_HOST", "minio"), 9000),
        )
        return super().healthz(tenant, body)


def main() -> None:
    env = os.environ
    server = RagflowStandIn(env.get("RAGFLOW_STAND_IN_API_GENERATION", "v0.27"), bind=("0.0.0.0", API_PORT))
    with open("/ragflow/conf/private.pem", "rb") as handle:
        server.private_key = serialization.load_pem_private_key(handle.read(), password=None)
    server.add_factory_admin()
    for entry in filter(None, env.get("RAGFLOW_STAND_IN_SERVING", "").split(";")):
        base_url, models = entry.split("=", 1)
        server.serve(base_url, *models.split(","))
    # As PID 1 of its container the process gets no default SIGTERM handling; stop at once on `docker stop`.
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(0))
    print("ragflow stand-in (%s API) on port %d" % (server.generation, API_PORT), flush=True)
    server.server.serve_forever()


if __name__ == "__main__":
    main()
