"""The FAKE RAGFlow of fake_ragflow.py, extended with the model-provider endpoints ragflow_provider uses.

UPSTREAM.md beside it names the upstream file and line of every route and behaviour it serves.

It follows RAGFlow's implementation of those endpoints:

- generation "v0.27" (api/apps/restful_apis/provider_api.py, models_api.py and
  api/apps/services/provider_api_service.py, models_api_service.py):
  GET/PUT /api/v1/providers; GET/POST /api/v1/providers/<provider>/instances;
  GET/PUT /api/v1/providers/<provider>/instances/<instance>;
  GET /api/v1/providers/<provider>/instances/<instance>/models; GET/PATCH /api/v1/models/default.
  A tenant default is stored as "model@instance@provider".
- generation "v0.24" (api/apps/llm_app.py, user_app.py): GET /v1/llm/my_llms[?include_details=true],
  POST /v1/llm/add_llm (adds or updates the tenant's row for factory + name), GET /v1/user/tenant_info,
  POST /v1/user/set_tenant_info (requires tenant_id, asr_id, embd_id, img2txt_id, llm_id). A tenant
  default is stored as "model@factory".

Creating an instance, updating it (unless verify is false) and POST .../connection test-call the
models as v0.27's verify_api_key does: one after the other until the FIRST one answers, then all are
saved (a model that does not answer but comes after one that does is saved unchecked); only when none
answers the request fails with the "Fail to access ..." messages joined (code 102, DATA_ERROR).
v0.24's add_llm test-calls its one model. Here a model answers when `serving[base_url]` names it.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from urllib.parse import urlsplit

from .fake_ragflow import FakeRagflow, envelope

DATA_ERROR = 102
ARGUMENT_ERROR = 101
ALLOWED_PROVIDERS = ("Xinference", "OpenAI", "Ollama", "VLLM")
DEFAULT_FIELDS = {"chat": "llm_id", "embedding": "embd_id", "rerank": "rerank_id"}
V024_TENANT_FIELDS = ("llm_id", "embd_id", "rerank_id", "asr_id", "img2txt_id", "tts_id")
PROVIDER_ROUTES = {
    "v0.27": [
        ("GET", r"/api/v1/providers", "list_providers"),
        ("PUT", r"/api/v1/providers", "add_provider"),
        ("GET", r"/api/v1/providers/(?P<provider>[^/]+)/instances", "list_instances"),
        ("POST", r"/api/v1/providers/(?P<provider>[^/]+)/connection", "verify_connection"),
        ("POST", r"/api/v1/providers/(?P<provider>[^/]+)/instances", "create_instance"),
        ("GET", r"/api/v1/providers/(?P<provider>[^/]+)/instances/(?P<instance>[^/]+)", "show_instance"),
        ("PUT", r"/api/v1/providers/(?P<provider>[^/]+)/instances/(?P<instance>[^/]+)", "update_instance"),
        ("GET", r"/api/v1/providers/(?P<provider>[^/]+)/instances/(?P<instance>[^/]+)/models", "instance_models"),
        ("GET", r"/api/v1/models/default", "default_models"),
        ("PATCH", r"/api/v1/models/default", "set_default_model"),
    ],
    "v0.24": [
        ("GET", r"/v1/llm/my_llms", "my_llms"),
        ("POST", r"/v1/llm/add_llm", "add_llm"),
        ("GET", r"/v1/user/tenant_info", "tenant_info"),
        ("POST", r"/v1/user/set_tenant_info", "set_tenant_info"),
    ],
}


def ok(data=True, message="success"):
    return 200, envelope(0, data, message), {}


def refused(message, code=DATA_ERROR):
    return 200, envelope(code, None, message), {}


class FakeRagflowProviders(FakeRagflow):
    def __init__(self, generation: str = "v0.27", bind: tuple[str, int] | None = None):
        super().__init__(generation)
        if bind is not None:
            # The lab's ragflow stand-in must answer on the container's network, not its loopback.
            self.server.server_close()
            self.server = type(self.server)(bind, self.server.RequestHandlerClass)
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        # base_url -> names of the models that answer RAGFlow's test call there.
        self.serving: dict[str, set[str]] = {}
        # v0.27: tenant -> provider name -> instance name -> {id, api_key, base_url, models}.
        self.providers: dict[str, dict[str, dict[str, dict]]] = {}
        self.defaults: dict[str, dict[str, str]] = {}
        # v0.24: tenant -> rows of the tenant_llm table; tenant -> the tenant row's model fields.
        self.tenant_llms: dict[str, list[dict]] = {}
        self.tenant_fields: dict[str, dict[str, str]] = {}

    def writes(self) -> list[tuple[str, str]]:
        """Requests that change something: a connection test (POST .../connection) saves nothing."""
        changing = super().writes() + [request for request in self.requests if request[0] in ("PUT", "PATCH")]
        return [request for request in changing if not request[1].endswith("/connection")]

    def serve(self, base_url: str, *model_names: str) -> None:
        self.serving.setdefault(base_url, set()).update(model_names)

    def verify_model(self, base_url: str, model_name: str, model_type: str) -> str:
        """RAGFlow's test call of one model: "" when it answers, else what RAGFlow reports."""
        if model_name in self.serving.get(base_url, ()):
            return ""
        kind = "embedding model" if model_type == "embedding" else "model"
        return "\nFail to access %s(%s).Connection error: %s is not serving it" % (kind, model_name, base_url)

    # v0.27 provider endpoints; each returns (HTTP status, JSON body, extra headers).
    def list_providers(self, tenant, _body, _match):
        names = sorted(self.providers.get(tenant, {}))
        return ok([{"name": name, "has_instance": bool(self.providers[tenant][name])} for name in names])

    def add_provider(self, tenant, body, _match):
        name = body.get("provider_name")
        if not name:
            return refused("provider_name is required", ARGUMENT_ERROR)
        if name not in ALLOWED_PROVIDERS:
            return refused("Provider '%s' is not allowed" % name)
        if name in self.providers.get(tenant, {}):
            return refused("Provider %s already exists" % name)
        self.providers.setdefault(tenant, {})[name] = {}
        return ok(None)

    def _instances(self, tenant, match):
        return self.providers.get(tenant, {}).get(match["provider"])

    def list_instances(self, tenant, _body, match):
        instances = self._instances(tenant, match)
        if instances is None:
            return refused("No provider found for provider '%s'" % match["provider"])
        return ok([{"id": row["id"], "instance_name": name, "status": "enable"} for name, row in instances.items()])

    def _verify_all(self, base_url, model_info):
        """verify_api_key: "" as soon as one model answers, else every failure message joined."""
        failures = ""
        for model in model_info or []:
            failure = self.verify_model(base_url, model["model_name"], model["model_type"][0])
            if not failure:
                return ""
            failures += failure
        return failures or "No valid models found"

    def verify_connection(self, _tenant, body, _match):
        if "api_key" not in body:
            return refused("api_key is required", ARGUMENT_ERROR)
        failures = self._verify_all(body.get("base_url", ""), body.get("model_info"))
        return refused(failures) if failures else ok(None)

    @staticmethod
    def _models(model_info):
        return {
            model["model_name"]: {"model_type": list(model["model_type"]), "max_tokens": model.get("max_tokens", 8192)}
            for model in model_info
        }

    def create_instance(self, tenant, body, match):
        instances = self._instances(tenant, match)
        if instances is None:
            return refused("Provider '%s' does not exist" % match["provider"])
        if "instance_name" not in body:
            return refused("instance_name is required", ARGUMENT_ERROR)
        if body["instance_name"] == "default":
            return refused("Instance name cannot be 'default'")
        failures = self._verify_all(body.get("base_url", ""), body.get("model_info"))
        if failures:
            return refused(failures)
        instances[body["instance_name"]] = {
            "id": secrets.token_hex(16),
            "api_key": body.get("api_key", ""),
            "base_url": body.get("base_url", ""),
            "models": self._models(body.get("model_info") or []),
        }
        return ok(None)

    def _instance(self, tenant, match):
        return (self._instances(tenant, match) or {}).get(match["instance"])

    def _no_instance(self, match):
        return refused("No instance found for provider '%s' and instance '%s'" % (match["provider"], match["instance"]))

    def show_instance(self, tenant, _body, match):
        row = self._instance(tenant, match)
        if row is None:
            return self._no_instance(match)
        return ok(
            {
                "id": row["id"],
                "instance_name": match["instance"],
                "region": "",
                "base_url": row["base_url"],
                "api_key": row["api_key"],
                "status": "enable",
            }
        )

    def update_instance(self, tenant, body, match):
        row = self._instance(tenant, match)
        if row is None:
            return self._no_instance(match)
        missing = [key for key in ("instance_name", "api_key", "base_url", "model_info") if key not in body]
        if missing:
            return refused("Missing required fields: %s" % ", ".join(missing), ARGUMENT_ERROR)
        if body.get("verify", True):
            failures = self._verify_all(body["base_url"], body["model_info"])
            if failures:
                return refused(failures)
        row.update(api_key=body["api_key"], base_url=body["base_url"], models=self._models(body["model_info"]))
        return ok(None)

    def instance_models(self, tenant, _body, match):
        row = self._instance(tenant, match)
        if row is None:
            return self._no_instance(match)
        return ok(
            [
                {"name": name, "model_type": model["model_type"], "max_tokens": model["max_tokens"], "status": "active"}
                for name, model in sorted(row["models"].items())
            ]
        )

    def default_models(self, tenant, _body, _match):
        models = []
        for model_type, composite in sorted(self.defaults.get(tenant, {}).items()):
            name, instance, provider = composite.rsplit("@", 2)
            models.append(
                {
                    "model_id": "",
                    "model_provider": provider,
                    "model_instance": instance,
                    "model_name": name,
                    "model_type": model_type,
                    "enable": True,
                }
            )
        return ok({"models": models})

    def set_default_model(self, tenant, body, _match):
        model_type = body.get("model_type")
        if not model_type:
            return refused("model_type is required", ARGUMENT_ERROR)
        if model_type not in ("chat", "embedding", "rerank", "asr", "vision", "tts", "ocr"):
            return refused("model type '%s' is invalid" % model_type)
        provider, instance, name = (body.get(key, "") for key in ("model_provider", "model_instance", "model_name"))
        row = self.providers.get(tenant, {}).get(provider, {}).get(instance)
        if row is None or name not in row["models"]:
            return refused("Model '%s' not found for provider '%s' and instance '%s'" % (name, provider, instance))
        if model_type not in row["models"][name]["model_type"]:
            return refused("Model '%s' isn't a %s model" % (name, model_type))
        self.defaults.setdefault(tenant, {})[model_type] = "%s@%s@%s" % (name, instance, provider)
        return ok(None)

    # v0.24 endpoints.
    def my_llms(self, tenant, _body, match):
        details = match["query"].get("include_details") == "true"
        factories: dict[str, dict] = {}
        for row in self.tenant_llms.get(tenant, []):
            entry = {"type": row["model_type"], "name": row["llm_name"], "used_token": 0, "status": "1"}
            if details:
                entry.update(api_base=row["api_base"], max_tokens=row["max_tokens"] or 8192)
            factories.setdefault(row["llm_factory"], {"tags": "LLM,TEXT EMBEDDING,TEXT RE-RANK", "llm": []})
            factories[row["llm_factory"]]["llm"].append(entry)
        return ok(factories)

    def add_llm(self, tenant, body, _match):
        if "llm_factory" not in body:
            return refused("required argument are missing: llm_factory; ", ARGUMENT_ERROR)
        factory = body["llm_factory"]
        if factory not in ALLOWED_PROVIDERS:
            return refused("LLM factory %s is not allowed" % factory)
        failure = self.verify_model(body.get("api_base", ""), body.get("llm_name", ""), body.get("model_type", ""))
        if failure:
            return refused(failure)
        row = {
            "llm_factory": factory,
            "llm_name": body["llm_name"],
            "model_type": body["model_type"],
            "api_base": body.get("api_base", ""),
            "api_key": body.get("api_key", "x"),
            "max_tokens": body.get("max_tokens"),
        }
        rows = self.tenant_llms.setdefault(tenant, [])
        same = [old for old in rows if (old["llm_factory"], old["llm_name"]) == (factory, row["llm_name"])]
        if same:
            same[0].update(row)
        else:
            rows.append(row)
        return ok(True)

    def tenant_info(self, tenant, _body, _match):
        fields = self.tenant_fields.setdefault(tenant, dict.fromkeys(V024_TENANT_FIELDS, ""))
        return ok({"tenant_id": tenant, "name": "admin's Kingdom", "role": "owner", **fields})

    def set_tenant_info(self, tenant, body, _match):
        missing = [key for key in ("tenant_id", "asr_id", "embd_id", "img2txt_id", "llm_id") if key not in body]
        if missing:
            return refused("required argument are missing: %s; " % ",".join(missing), ARGUMENT_ERROR)
        if body["tenant_id"] != tenant:
            return refused("Tenant not found!")
        fields = self.tenant_fields.setdefault(tenant, dict.fromkeys(V024_TENANT_FIELDS, ""))
        fields.update({key: value for key, value in body.items() if key in V024_TENANT_FIELDS})
        return ok(True)

    def _route(self, method: str, target: str):
        """(endpoint name, path parameters) of a provider endpoint, or None for the base fake's routes."""
        parts = urlsplit(target)
        for route_method, pattern, endpoint in PROVIDER_ROUTES[self.generation]:
            found = re.fullmatch(pattern, parts.path)
            if route_method == method and found:
                query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
                return endpoint, {**found.groupdict(), "query": query}
        return None

    def _handler_class(self):
        fake = self
        base = super()._handler_class()

        class Handler(base):
            def _dispatch(self):
                route = fake._route(self.command, self.path)
                if route is None:
                    return super()._dispatch()
                fake.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                user = fake.current_user(self.headers.get("Authorization"))
                if user is None:
                    return self._answer(401, envelope(401, None, "<Unauthorized '401: Unauthorized'>"), {})
                endpoint, match = route
                return self._answer(*getattr(fake, endpoint)(user["tenant_id"], body, match))

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

        return Handler
