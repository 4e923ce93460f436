# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Xinference models registered in RAGFlow as a model provider, and the tenant's default models.

RAGFlow v0.27 keeps providers per tenant, each with named instances (a base URL and API key) that
hold models; tenant defaults are "model@instance@provider" and set one type at a time
(PUT /api/v1/providers, /api/v1/providers/<p>/instances[/<i>[/models]], /api/v1/models/default).
Up to v0.24 a tenant has one row per model and factory (POST /v1/llm/add_llm, GET /v1/llm/my_llms)
and its defaults are "model@factory" fields of the tenant (/v1/user/tenant_info, set_tenant_info).
Both generations test-call models before they save them, but v0.27 stops at the first model that
answers (api/apps/services/provider_api_service.py verify_api_key) and then saves them all, so a model
Xinference does not serve would be registered without complaint. Each model is therefore tested on
its own first, through RAGFlow's POST /api/v1/providers/<p>/connection (which saves nothing); v0.24's
add_llm takes one model at a time, so its test call is already per model.
"""

from __future__ import annotations

import ipaddress
from collections import namedtuple
from urllib.parse import urlsplit

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError

PROVIDER = "Xinference"
# Model type -> the tenant field that holds its default up to v0.24.
V024_DEFAULT_FIELDS = {"chat": "llm_id", "embedding": "embd_id", "rerank": "rerank_id"}
# set_tenant_info refuses a request without these; the ones the module does not manage are sent back unchanged.
V024_REQUIRED_TENANT_FIELDS = ("asr_id", "embd_id", "img2txt_id", "llm_id")
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
# One write the plan holds: what it does in words (the result's `changes`, the diff), and the request.
Step = namedtuple("Step", "description action method path body")


def check_provider_url(provider_url):
    """Refuse a base URL that cannot work from inside the RAGFlow container."""
    parts = urlsplit(provider_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RagflowError("provider_url %s is not an http(s) URL with a host" % provider_url)
    host = parts.hostname
    try:
        address = ipaddress.ip_address(host)
        local = address.is_loopback or address.is_unspecified
    except ValueError:
        local = host in LOOPBACK_NAMES or host.endswith(".localhost")
    if local:
        raise RagflowError(
            "provider_url %s points at %s, but RAGFlow calls Xinference from inside its container, where %s "
            "is the container itself, not the host that runs Xinference. Use the Xinference service name on "
            "a Docker network RAGFlow shares (for example http://xinference:9997), or "
            "http://host.docker.internal:9997 (RAGFlow's compose maps that name to the host gateway)."
            % (provider_url, host, host)
        )
    if parts.path.rstrip("/").endswith("/v1"):
        raise RagflowError(
            "provider_url %s ends in /v1: RAGFlow's Xinference client adds /v1 itself, give the base URL "
            "without it" % provider_url
        )


def wanted_defaults(models):
    """Model type -> name of the first model of that type: what becomes the tenant's default."""
    defaults = {}
    for model in models:
        defaults.setdefault(model["type"], model["name"])
    return defaults


class Registration:
    """One tenant's Xinference models and defaults: the plan of writes that brings them to the wanted
    state (every read, no write), then its application; check mode stops after the plan."""

    def __init__(self, api, *, provider_url, api_key, instance_name, models, set_defaults, check_mode):
        self.api = api
        self.provider_url = provider_url.rstrip("/")
        self.api_key = api_key or ""
        self.instance_name = instance_name
        self.models = models
        self.defaults = wanted_defaults(models) if set_defaults else {}
        self.check_mode = check_mode

    def verify_models(self, connection_path):
        """Test-call each model on its own through RAGFlow, so that one that does not answer is named."""
        failures = []
        for model in self.models:
            body = {"api_key": self.api_key, "base_url": self.provider_url, "model_info": self.model_info([model])}
            try:
                self.api.call("test model %s" % model["name"], "POST", connection_path, body)
            except RagflowError as exc:
                failures.append("%s (%s): %s" % (model["name"], model["type"], " ".join(str(exc).split())))
        if failures:
            raise RagflowError(
                "RAGFlow could not use %d of %d models at %s: %s; check that Xinference serves them under these "
                "model UIDs and that the RAGFlow container reaches provider_url"
                % (len(failures), len(self.models), self.provider_url, "; ".join(failures))
            )

    def plan(self):
        """The writes that bring the tenant to the wanted state, in order; none when it is there."""
        return self.plan_v027() if self.api.generation == "v0.27" else self.plan_v024()

    def apply(self, steps):
        """Send each write in order; a failure says which were done before it (and changed=true then)."""
        done = []
        for step in steps:
            try:
                self.api.call(step.action, step.method, step.path, step.body)
            except RagflowError as exc:
                if not done:
                    raise
                raise RagflowError("%s (done before: %s)" % (exc, "; ".join(done)), changed=True) from exc
            done.append(step.description)

    def ensure(self):
        steps = self.plan()
        if not self.check_mode:
            self.apply(steps)
        changes = [step.description for step in steps]
        return {"changed": bool(changes), "changes": changes, "defaults": self.defaults}

    def model_info(self, models=None):
        return [
            {"model_name": model["name"], "model_type": [model["type"]], "max_tokens": model["max_tokens"]}
            for model in (self.models if models is None else models)
        ]

    def plan_v027(self):
        steps = []
        providers_path = "/api/v1/providers"
        instances_path = "%s/%s/instances" % (providers_path, PROVIDER)
        instance_path = "%s/%s" % (instances_path, self.instance_name)
        self.verify_models("%s/%s/connection" % (providers_path, PROVIDER))
        instance = {
            "instance_name": self.instance_name,
            "api_key": self.api_key,
            "base_url": self.provider_url,
            "model_info": self.model_info(),
        }
        providers = self.api.call("list providers", "GET", providers_path) or []
        instance_names = []
        if PROVIDER in [provider.get("name") for provider in providers]:
            instances = self.api.call("list instances", "GET", instances_path) or []
            instance_names = [row.get("instance_name") for row in instances]
        else:
            steps.append(
                Step("add provider %s" % PROVIDER, "add provider", "PUT", providers_path, {"provider_name": PROVIDER})
            )
        if self.instance_name not in instance_names:
            steps.append(
                Step(
                    "create instance %s of %s at %s with %s"
                    % (self.instance_name, PROVIDER, self.provider_url, self.names()),
                    "create instance",
                    "POST",
                    instances_path,
                    instance,
                )
            )
        elif self.instance_differs(instance_path):
            steps.append(
                Step(
                    "update instance %s of %s to %s with %s"
                    % (self.instance_name, PROVIDER, self.provider_url, self.names()),
                    "update instance",
                    "PUT",
                    instance_path,
                    instance,
                )
            )
        current = self.api.call("list default models", "GET", "/api/v1/models/default") or {}
        current_defaults = {
            row.get("model_type"): (row.get("model_provider"), row.get("model_instance"), row.get("model_name"))
            for row in current.get("models") or []
        }
        for model_type, name in sorted(self.defaults.items()):
            if current_defaults.get(model_type) != (PROVIDER, self.instance_name, name):
                steps.append(
                    Step(
                        "set default %s model to %s" % (model_type, name),
                        "set default %s model" % model_type,
                        "PATCH",
                        "/api/v1/models/default",
                        {
                            "model_provider": PROVIDER,
                            "model_instance": self.instance_name,
                            "model_name": name,
                            "model_type": model_type,
                        },
                    )
                )
        return steps

    def instance_differs(self, instance_path):
        shown = self.api.call("show instance", "GET", instance_path) or {}
        rows = self.api.call("list instance models", "GET", instance_path + "/models") or []
        have = sorted((row.get("name"), sorted(row.get("model_type") or []), row.get("max_tokens")) for row in rows)
        want = sorted((model["name"], [model["type"]], model["max_tokens"]) for model in self.models)
        return (shown.get("base_url"), shown.get("api_key") or "", have) != (self.provider_url, self.api_key, want)

    def plan_v024(self):
        steps = []
        factories = self.api.call("list models", "GET", "/v1/llm/my_llms?include_details=true") or {}
        registered = {(row.get("name"), row.get("type")): row for row in factories.get(PROVIDER, {}).get("llm", [])}
        for model in self.models:
            row = registered.get((model["name"], model["type"]))
            if row is None or (row.get("api_base"), row.get("max_tokens")) != (self.provider_url, model["max_tokens"]):
                steps.append(
                    Step(
                        "add %s model %s of %s at %s" % (model["type"], model["name"], PROVIDER, self.provider_url),
                        "add model %s" % model["name"],
                        "POST",
                        "/v1/llm/add_llm",
                        {
                            "llm_factory": PROVIDER,
                            "llm_name": model["name"],
                            "model_type": model["type"],
                            "api_base": self.provider_url,
                            "api_key": self.api_key,
                            "max_tokens": model["max_tokens"],
                        },
                    )
                )
        tenant = self.api.call("read tenant", "GET", "/v1/user/tenant_info") or {}
        wanted = {V024_DEFAULT_FIELDS[kind]: "%s@%s" % (name, PROVIDER) for kind, name in self.defaults.items()}
        stale = sorted(field for field, value in wanted.items() if tenant.get(field) != value)
        if stale:
            body = {field: tenant.get(field) or "" for field in V024_REQUIRED_TENANT_FIELDS}
            body.update(wanted, tenant_id=tenant.get("tenant_id"))
            steps.append(
                Step(
                    "set tenant defaults %s" % ", ".join("%s=%s" % (field, wanted[field]) for field in stale),
                    "set tenant defaults",
                    "POST",
                    "/v1/user/set_tenant_info",
                    body,
                )
            )
        return steps

    def names(self):
        return ", ".join("%s (%s)" % (model["name"], model["type"]) for model in self.models)
