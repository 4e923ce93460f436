# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The desired state of one Xinference model: its launch spec, drift, health, and healing.

Xinference keeps no record of how a model was launched beyond what describe reports (name, type,
engine, format, size, quantization, replica), so drift is judged on those fields only. A model
whose worker died stays known to the supervisor, answering 500 "Connect call failed" to describe,
inference and even terminate, and refusing a new launch of its uid, until the supervisor drops the
worker or a restarted worker rejoins. Healing is therefore: terminate until the server lets go of
the uid, then launch again, all within one deadline.

Only what heals is retried: an answer with a sign of a dead worker (DEAD_WORKER_SIGNS), 503 while a
model loads, "already in the model list" (a uid the server has not let go of yet), and a launch that
ends ERROR without a message (no worker took it, as between the supervisor dropping a dead worker
and its replacement registering). Anything else fails at once, with the last real cause seen.

Xinference's own worker recovery and this heal converge: a worker restarted by its supervisor
(container restart policy, systemd) with worker_recovery under XINFERENCE_HOME re-registers and
relaunches the models it ran; the module then finds the uid loading (503, waited for) or ready
(probed, nothing to do). When the worker does not come back in time, the supervisor drops it and
records its models as unexpectedly terminated; the module relaunches them (healed: true). A launch
racing the recovery answers "already in the model list", and the module waits for the recovered
model instead of failing.
"""

from __future__ import annotations

import time

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_errors import (
    ACTOR_PREFIX,
    ALREADY_LAUNCHED,
    NOT_FOUND,
    XinferenceError,
    dead_worker_sign,
    detail_of,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_probe import ProbeFailed, Prober, probe_for

ABSENT = "absent"
LOADING = "loading"
READY = "ready"
UNHEALTHY = "unhealthy"

# What GET /v1/models/{uid} reports of the launch request, so what drift can be seen in.
REPORTED_FIELDS = (
    "model_name",
    "model_type",
    "model_engine",
    "model_format",
    "model_size_in_billions",
    "quantization",
    "replica",
)
# Launch fields the module's own options set; `extra` may not set them behind the options' back.
OPTION_FIELDS = (
    *REPORTED_FIELDS,
    "model_uid",
    "model_path",
    "n_gpu",
    "gpu_idx",
    "worker_ip",
    "trust_remote_code",
    "quantization_config",
)


def validate_options(params):
    """The options checked before any call: XinferenceError (one line) for one the server cannot take."""
    for name in ("wait_timeout", "timeout"):
        if params[name] < 1:
            raise XinferenceError("%s must be at least 1 second, not %s" % (name, params[name]))
    if params["replica"] is not None and params["replica"] < 1:
        raise XinferenceError("replica must be at least 1, not %s" % params["replica"])
    if params["model_uid"] is not None and not params["model_uid"].strip():
        raise XinferenceError("model_uid is empty: give the model's uid, or leave it out to use model_name")
    model_uid = params["model_uid"] or params["model_name"]
    if "/" in model_uid:
        raise XinferenceError(
            "model_uid %s holds a '/', which Xinference cannot address (/v1/models/{uid}): set model_uid "
            "to a name without one (a model_name with a '/' needs an explicit model_uid)" % model_uid
        )
    return model_uid


def cli_typed(value):
    """A string typed as `xinference launch -qc KEY VALUE` types it; other values unchanged."""
    if not isinstance(value, str):
        return value
    if value == "None":
        return None
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    for number in (int, float):
        try:
            return number(value)
        except ValueError:
            pass
    return value


def size_in_billions(value):
    """Whole sizes as numbers, fractional ones as the server writes them ("1_5"), like the CLI."""
    if value is None:
        return None
    text = str(value)
    return int(text) if text.isdigit() else text


def parse_n_gpu(value):
    """`auto`, `cpu` (sent as null: no GPU) or a GPU count."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("cpu", "none", "null"):
        return None
    if text.isdigit():
        return int(text)
    raise XinferenceError("n_gpu must be auto, cpu or a number of GPUs, not %r" % value)


def launch_spec(params):
    """The JSON body of POST /v1/models for the module's parameters."""
    spec = {
        "model_uid": params["model_uid"] or params["model_name"],
        "model_name": params["model_name"],
        "model_type": params["model_type"],
        "replica": params["replica"],
        "n_gpu": parse_n_gpu(params["n_gpu"]),
    }
    for field in ("model_engine", "model_format", "quantization", "model_path", "gpu_idx", "worker_ip"):
        if params[field] is not None:
            spec[field] = params[field]
    if params["model_size_in_billions"] is not None:
        spec["model_size_in_billions"] = size_in_billions(params["model_size_in_billions"])
    # Both go to the engine as top-level keys: the server passes every key it does not name itself
    # to the model, where transformers builds BitsAndBytesConfig(**quantization_config).
    if params["trust_remote_code"] is not None:
        spec["trust_remote_code"] = params["trust_remote_code"]
    if params["quantization_config"]:
        spec["quantization_config"] = {key: cli_typed(value) for key, value in params["quantization_config"].items()}
    extra = params["extra"] or {}
    clashes = sorted(set(extra) & set(OPTION_FIELDS))
    if clashes:
        raise XinferenceError("extra may not set %s: use the module option of that name" % ", ".join(clashes))
    spec.update(extra)
    return spec


def same_value(wanted, reported):
    # Sizes come back as "0_5" or 14, engines as "transformers" or "Transformers".
    return str(wanted).lower() == str(reported).lower()


def drifted_fields(spec, description):
    """The reported fields whose value on the server is not the one asked for."""
    return [
        field
        for field in REPORTED_FIELDS
        if spec.get(field) is not None
        and description.get(field) is not None
        and not same_value(spec[field], description[field])
    ]


def reported_spec(description):
    return {field: description[field] for field in REPORTED_FIELDS if description and field in description}


class Observation:
    """What the server says of a uid: state, its description when it has one, and why not ready."""

    def __init__(self, state, description=None, reason=None):
        self.state = state
        self.description = description
        self.reason = reason


class ModelManager:
    """Reads, terminates and launches one model uid, all within one deadline."""

    def __init__(self, api, model_uid, wait_timeout, poll_interval=2.0, *, clock=time.monotonic, sleep=time.sleep):
        self.api = api
        self.model_uid = model_uid
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep
        self.deadline = clock() + wait_timeout
        # Whether a terminate or a launch went through: the server's state changed.
        self.changed = False
        # The last answer that said why the model is not running (a dead worker's "[Errno 111] ..."),
        # kept for the failure message once later answers say less ("ERROR with no error message").
        self.last_cause = None

    def note(self, text):
        if dead_worker_sign(text):
            self.last_cause = text

    def pause(self, what, last_answer):
        """Sleep before the next try, or XinferenceError once the deadline has passed."""
        if self.clock() + self.poll_interval > self.deadline:
            raise XinferenceError(
                "%s: gave up after wait_timeout=%ss; the server's last answer: %s"
                % (what, self.wait_timeout, last_answer)
            )
        self.sleep(self.poll_interval)

    def observe(self, health_check):
        status, payload = self.api.describe(self.model_uid)
        if status == 200 and isinstance(payload, dict):
            if health_check:
                failure = probe_failure(self.api, self.model_uid, payload)
                if failure:
                    self.note(failure)
                    return Observation(UNHEALTHY, payload, failure)
            return Observation(READY, payload)
        detail = detail_of(status, payload)
        if status == 503:
            return Observation(LOADING, reason=detail)
        listed = self.api.list_models().get(self.model_uid)
        if status == 400 and NOT_FOUND in detail and listed is None:
            return Observation(ABSENT)
        reason = "describe %s answered %s" % (self.model_uid, detail)
        self.note(reason)
        return Observation(UNHEALTHY, listed, reason)

    def observe_settled(self, health_check):
        """The observation once a load in progress (someone else's launch) has finished."""
        observation = self.observe(health_check)
        while observation.state == LOADING:
            self.pause("waiting for %s to finish loading" % self.model_uid, observation.reason)
            observation = self.observe(health_check)
        return observation

    def terminate(self):
        """Terminate the uid, retrying while its dead worker keeps the server from letting go."""
        while True:
            status, payload = self.api.terminate(self.model_uid)
            detail = detail_of(status, payload)
            if status == 200:
                self.changed = True
                return
            if status == 400 and NOT_FOUND in detail:
                return
            if status != 503 and not dead_worker_sign(detail):
                raise XinferenceError("terminating %s failed: %s" % (self.model_uid, detail))
            self.note(detail)
            self.pause("terminating %s" % self.model_uid, detail)

    def launch(self, spec):
        """Launch without blocking the server's request, then follow the load to READY or ERROR."""
        while True:
            status, payload = self.api.launch(spec)
            detail = detail_of(status, payload)
            if status == 200:
                self.changed = True
            elif ALREADY_LAUNCHED in detail:
                # A uid whose worker died is still "in the model list" until terminate gets through;
                # one that a recovered worker relaunched is loading: wait for it, then it is ready.
                if self.observe_settled(False).state == READY:
                    return
                self.terminate()
                self.pause("launching %s" % self.model_uid, detail)
                continue
            elif status == 503 or dead_worker_sign(detail):
                self.note(detail)
                self.pause("launching %s" % self.model_uid, detail)
                continue
            else:
                raise explain_launch_failure(self.api, spec, detail)
            failure = self.follow_load()
            if failure is None:
                return
            if dead_worker_sign(failure):
                self.note(failure)
                self.pause("launching %s" % self.model_uid, failure)
                continue
            if failure:
                raise explain_launch_failure(self.api, spec, failure)
            # ERROR without any message is what a launch gets when no worker took it, as between
            # the supervisor dropping a dead worker and its replacement registering: try again.
            self.pause(
                "launching %s" % self.model_uid,
                "launch status ERROR with no error message (is any Xinference worker alive?)",
            )

    def follow_load(self):
        """None once the model is READY; the load's error message ("" when none) once it is ERROR."""
        while True:
            instance = self.api.instance(self.model_uid) or {}
            status = instance.get("status")
            if status == "READY":
                return None
            if status == "ERROR":
                return instance_error(instance)
            fraction, stage = self.api.progress(self.model_uid)
            self.pause(
                "waiting for %s to load" % self.model_uid,
                "status %s, %s" % (status or "unknown", describe_progress(fraction, stage)),
            )


def probe_failure(api, model_uid, description):
    """None when the model answers the probe of its kind (xinference_probe.PROBES), else what went wrong."""
    model_type = description.get("model_type")
    probe = probe_for(model_type, description.get("model_ability") or [])
    if probe is None:
        return None
    try:
        Prober(api, api.timeout).run(model_uid, probe)
    except ProbeFailed as exc:
        return "%s probe %s: %s" % (model_type, probe.path, exc.text)
    return None


def check_against_server(api, spec):
    """XinferenceError when the server cannot run `spec` at all (unknown name for its type, an engine
    it does not offer), asked before anything running is terminated for it."""
    name, model_type = spec["model_name"], spec["model_type"]
    engines = api.engines(name, model_type)
    if not engines:
        raise XinferenceError(
            "the server knows no %s model named %s (GET /v1/engines): nothing was terminated; check model_name "
            "and model_type" % (model_type, name)
        )
    wanted = spec.get("model_engine")
    if wanted and not any(same_value(wanted, engine) for engine in engines):
        raise XinferenceError(
            "model_engine=%s is not an engine the server offers for %s (%s): %s; nothing was terminated"
            % (wanted, name, model_type, ", ".join(engines))
        )


def instance_error(instance):
    messages = [
        replica["error_message"]
        for replica in instance.get("replica_statuses") or []
        if isinstance(replica, dict) and replica.get("error_message")
    ]
    text = "; ".join(messages) or instance.get("error_message") or ""
    return ACTOR_PREFIX.sub("", text)


def describe_progress(fraction, stage):
    if fraction is None:
        return "no progress reported"
    return "loading %d%% done (%s)" % (round(fraction * 100), stage or "no stage reported")


def explain_launch_failure(api, spec, message):
    """XinferenceError that names the cause in the module's terms, with the server's own message."""
    name = spec["model_name"]
    model_type = spec["model_type"]
    lowered = message.lower()
    if "bitsandbytes" in lowered:
        return XinferenceError(
            "launching %s: the Xinference server cannot use bitsandbytes, which quantization_config needs; "
            "install it where the model runs (pip install bitsandbytes): %s" % (name, message)
        )
    if "out of memory" in lowered or "outofmemory" in lowered:
        return XinferenceError(
            "launching %s: out of GPU memory (n_gpu=%s, gpu_idx=%s); free a GPU, quantize, or pick another one: %s"
            % (name, spec.get("n_gpu"), spec.get("gpu_idx"), message)
        )
    if "Model not found, name" in message or "cannot be run on engine" in message:
        engines = api.engines(name, model_type)
        if not engines:
            return XinferenceError(
                "unknown model_name %s for model_type %s: the server has no such built-in or registered model (%s)"
                % (name, model_type, message)
            )
        return XinferenceError(
            "%s cannot run %s with model_engine=%s, model_format=%s, model_size_in_billions=%s, quantization=%s; "
            "engines it offers for it: %s (%s)"
            % (
                name,
                model_type,
                spec.get("model_engine"),
                spec.get("model_format"),
                spec.get("model_size_in_billions"),
                spec.get("quantization"),
                ", ".join(engines),
                message,
            )
        )
    return XinferenceError("launching %s failed: %s" % (name, message))


def forced_reason(params, observation):
    """Why the model must be launched whatever its spec, or None."""
    if observation.state in (ABSENT, UNHEALTHY):
        return observation.state
    if params["state"] == "restarted":
        return "restarted"
    if params["recreate"] == "always":
        return "recreate=always"
    return None


def relaunch_reason(params, observation, spec, warn):
    """Why the model must be (re)launched, or None when it is as wanted."""
    forced = forced_reason(params, observation)
    if forced:
        return forced
    drifted = drifted_fields(spec, observation.description)
    if not drifted:
        return None
    change = ", ".join("%s %s -> %s" % (field, observation.description[field], spec[field]) for field in drifted)
    if params["recreate"] == "on_change":
        return "changed: " + change
    warn(
        "%s runs with %s; recreate=never keeps it that way (use recreate=on_change to relaunch)"
        % (spec["model_uid"], change)
    )
    return None


def ensure_model(api, params, check_mode, warn, poll_interval=2.0, *, clock=time.monotonic, sleep=time.sleep):
    """Bring one model uid to params["state"]; the module's result, less what main() adds.

    XinferenceError on failure, its `changed` saying whether the server's state changed first."""
    model_uid = validate_options(params)
    manager = ModelManager(api, model_uid, params["wait_timeout"], poll_interval, clock=clock, sleep=sleep)
    try:
        return converge(manager, api, params, check_mode, warn)
    except XinferenceError as exc:
        failure = exc
        if manager.last_cause and manager.last_cause not in str(exc):
            failure = XinferenceError("%s; the last cause seen: %s" % (exc, manager.last_cause))
        failure.changed = manager.changed
        raise failure from exc


def converge(manager, api, params, check_mode, warn):
    model_uid = manager.model_uid
    wanted_present = params["state"] != "absent"
    before = manager.observe_settled(params["health_check"] and wanted_present)
    result = {
        "model_uid": model_uid,
        "changed": False,
        "healed": False,
        "unhealthy_reason": before.reason if before.state == UNHEALTHY else None,
        "relaunch_reason": None,
        "model": before.description if before.state == READY else None,
    }
    if not wanted_present:
        if before.state == ABSENT:
            return result
        result.update(changed=True, diff={"before": reported_spec(before.description), "after": {}})
        if not check_mode:
            manager.terminate()
            result["model"] = None
        return result

    spec = launch_spec(params)
    if spec.get("model_type") == "LLM" and not spec.get("model_engine"):
        raise XinferenceError(
            "model_engine is required for an LLM; engines the server offers for %s: %s"
            % (spec["model_name"], ", ".join(api.engines(spec["model_name"], "LLM")) or "none (unknown model_name)")
        )
    result["launch_spec"] = spec
    reason = relaunch_reason(params, before, spec, warn)
    if reason is None:
        return result
    worker_died = before.state == ABSENT and model_uid in api.unexpectedly_terminated()
    if worker_died:
        result["unhealthy_reason"] = manager.last_cause = (
            "%s was dropped with its worker: Xinference records it as unexpectedly terminated" % model_uid
        )
    result.update(
        changed=True,
        healed=before.state == UNHEALTHY or worker_died,
        relaunch_reason="unhealthy" if worker_died else reason,
        diff={"before": reported_spec(before.description), "after": spec},
    )
    if before.state != ABSENT:
        check_against_server(api, spec)
    if check_mode:
        return result
    if before.state != ABSENT:
        manager.terminate()
    manager.launch(spec)
    after = manager.observe_settled(params["health_check"])
    if after.state != READY:
        raise XinferenceError("%s was launched but is %s: %s" % (model_uid, after.state, after.reason))
    result["model"] = after.description
    return result
