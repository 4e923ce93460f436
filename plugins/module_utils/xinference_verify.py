# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only verification of an Xinference gateway and its models: the checks an operator does by
hand with curl (list the models, one embedding, one rerank, one streamed chat), each with a verdict,
what was measured, and what to do when it fails.

What Xinference 4.1 answers, as seen on a real server:
- GET /v1/models lists {"data": [{"id": uid, "model_type", "model_ability", "address", "accelerators",
  ...}]} from what each worker last reported; a worker that stopped answering keeps its models
  listed from the supervisor's cache.
- GET /v1/models/{uid} (describe) reports the same fields plus "n_worker" and "replica"; "address"
  is the model process's host:port on its worker, "accelerators" the GPU indexes it was given
  ([] on CPU). It answers 400 "Model not found in the model list" for an unknown uid, 503 while the
  model loads, and 500 "[Errno 111] Connect call failed (...)" once the model's worker is dead.
- Once the supervisor drops a dead worker (its heartbeat timed out), the worker's models are neither
  listed nor described; GET /metrics keeps xinference:model_unexpected_termination{model_uid=...} = 1
  for each until it is launched again (core/supervisor.py _record_unexpected_down_replicas), which is
  how a model whose worker died is told apart from one never launched.
- The probes, one per kind of model, are module_utils/xinference_probe.py's table.
"""

from __future__ import annotations

import time

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_api import (
    CredentialsRefused,
    NoAnswer,
    NotXinference,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_errors import (
    NOT_FOUND,
    XinferenceError,
    dead_worker_sign,
    detail_of,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_probe import (
    MAX_TOKENS,
    ProbeFailed,
    Prober,
    TtftExceeded,
    probe_for,
    timed_out,
)

XINFERENCE_STAGE = "run the xinference stage (site.yml --tags xinference)"
HEAL_HINT = "stack_verify_heal: true does it through llmops.ragstack.xinference_model"


def make_check(
    name, verdict, value, diagnosis=None, measured=None, *, dead_worker=False, model_uid=None, model_type=None
):
    return {
        "name": name,
        "verdict": verdict,
        "value": value,
        "diagnosis": diagnosis,
        "measured": measured or {},
        "dead_worker": dead_worker,
        "model_uid": model_uid,
        "model_type": model_type,
    }


def diagnose(model_uid, failure, gateway_answers, *, endpoint, timeout, address=None):
    """(dead_worker, diagnosis) of a failed probe, in what-to-do terms.

    `gateway_answers` says whether GET /v1/models still answers: a refused connection to the
    gateway itself is Xinference gone, not one worker."""
    if dead_worker_sign(failure.text) and (failure.status is not None or gateway_answers):
        return True, (
            "gateway lists %s but its worker does not answer (%s): the worker process died; terminate and "
            "relaunch the model (%s)" % (model_uid, failure.text, HEAL_HINT)
        )
    if failure.transport and not gateway_answers:
        return False, (
            "Xinference stopped answering at %s while %s was probed (%s): is it still running? see the "
            "xinference stage" % (endpoint, model_uid, failure.text)
        )
    return False, what_to_do(model_uid, failure, timeout, address)


def what_to_do(model_uid, failure, timeout, address):
    """The diagnosis of a failure that is not the server or a worker gone."""
    where = " (%s)" % address if address else ""
    if failure.status == 401:
        return failure.text
    if failure.status in (400, 404) and NOT_FOUND in failure.text:
        return "not launched: %s; %s" % (model_uid, XINFERENCE_STAGE)
    if failure.status == 503:
        return "%s is still loading (%s): wait for it and verify again" % (model_uid, failure.text)
    if failure.timeout:
        return (
            "%s did not answer within timeout=%ss (%s): the model is overloaded or running on CPU; see the "
            "worker log%s" % (model_uid, timeout, failure.text, where)
        )
    return "%s: %s; see the worker log%s" % (model_uid, failure.text, where)


class Verifier:
    """Runs the checks against one endpoint through an XinferenceApi (or a double with its methods)."""

    def __init__(self, api, ttft_timeout, clock=time.monotonic):
        self.api = api
        self.ttft_timeout = ttft_timeout
        self.clock = clock
        self.prober = Prober(api, ttft_timeout, clock)
        self.worker_died = set()

    def elapsed_ms(self, started):
        return round((self.clock() - started) * 1000)

    def run(self, planned):
        """The module's result for `planned`, a list of {"model_uid", "model_type" (or None)}."""
        uids = [model["model_uid"] for model in planned]
        gateway, listed, reached = self.gateway(uids)
        checks = [gateway]
        models = {}
        for model in planned:
            uid = model["model_uid"]
            if not reached:
                models[uid] = {}
                checks.append(
                    make_check(
                        "model %s" % uid,
                        "skip",
                        "not checked: the gateway check failed",
                        model_uid=uid,
                        model_type=model.get("model_type"),
                    )
                )
                continue
            check, description = self.model(uid, model.get("model_type"), listed)
            models[uid] = description
            checks.append(check)
        return {
            "changed": False,
            "checks": checks,
            "dead_workers": [check["model_uid"] for check in checks if check["dead_worker"]],
            "models": models,
            "failed_checks": sum(1 for check in checks if check["verdict"] == "fail"),
        }

    def gateway(self, uids):
        """(check, {uid: entry} or None when the list could not be read, whether the server answered)."""
        started = self.clock()
        try:
            listed = self.api.list_models()
        except NoAnswer as exc:
            diagnosis = (
                str(exc)
                if exc.through_proxy
                else "Xinference does not answer at %s (%s): is it running there? see the xinference stage"
                % (self.api.endpoint, exc.reason)
            )
            return make_check("gateway", "fail", "not reachable", diagnosis), None, False
        except CredentialsRefused as exc:
            return make_check("gateway", "fail", "credentials refused", str(exc)), None, False
        except NotXinference as exc:
            return make_check("gateway", "fail", "not Xinference", str(exc)), None, False
        except XinferenceError as exc:
            return (
                make_check(
                    "gateway",
                    "fail",
                    "GET /v1/models failed",
                    "%s; see the supervisor log" % exc,
                    {"latency_ms": self.elapsed_ms(started)},
                ),
                None,
                True,
            )
        latency = self.elapsed_ms(started)
        missing = [uid for uid in uids if uid not in listed]
        value = "%d listed, %d/%d planned (%d ms)" % (len(listed), len(uids) - len(missing), len(uids), latency)
        measured = {"latency_ms": latency, "listed": len(listed), "planned_listed": len(uids) - len(missing)}
        if missing:
            self.worker_died = self.api.unexpectedly_terminated() & set(missing)
            diagnoses = []
            died = [uid for uid in missing if uid in self.worker_died]
            never = [uid for uid in missing if uid not in self.worker_died]
            if died:
                diagnoses.append(worker_died_diagnosis(", ".join(died)))
            if never:
                diagnoses.append("not launched: %s; %s" % (", ".join(never), XINFERENCE_STAGE))
            return make_check("gateway", "fail", value, "; ".join(diagnoses), measured), listed, True
        return make_check("gateway", "pass", value, None, measured), listed, True

    def gateway_answers(self):
        try:
            self.api.list_models()
        except NoAnswer:
            return False
        except XinferenceError:
            return True
        return True

    def describe(self, uid):
        """(description or {}, ProbeFailed of the describe or None)."""
        try:
            status, payload = self.api.describe(uid)
        except NoAnswer as exc:
            return {}, ProbeFailed(str(exc.reason), transport=True, timeout=timed_out(exc.reason))
        except CredentialsRefused as exc:
            return {}, ProbeFailed(str(exc), 401)
        if status == 200 and isinstance(payload, dict):
            return payload, None
        return {}, ProbeFailed("describe answered %s" % detail_of(status, payload), status)

    def model(self, uid, planned_type, listed):
        """(check of one planned model, its description or {})."""
        description, describe_failure = self.describe(uid)
        entry = (listed or {}).get(uid) or {}
        reported_type = description.get("model_type") or entry.get("model_type")
        model_type = planned_type or reported_type
        name = "model %s" % uid

        def failed(value, diagnosis, measured=None, dead_worker=False):
            return (
                make_check(
                    name,
                    "fail",
                    value,
                    diagnosis,
                    measured,
                    dead_worker=dead_worker,
                    model_uid=uid,
                    model_type=model_type,
                ),
                description,
            )

        if describe_failure is not None and describe_failure.status == 503:
            return failed("loading", self.diagnose(uid, describe_failure, True)[1])
        if listed is not None and uid not in listed:
            died = uid in self.worker_died
            if died:
                value, diagnosis = "worker died", worker_died_diagnosis(uid)
            else:
                value, diagnosis = "not listed", "not launched: %s; %s" % (uid, XINFERENCE_STAGE)
            return failed(value, diagnosis, dead_worker=died)
        if planned_type and reported_type and planned_type != reported_type:
            return failed(
                "runs as %s" % reported_type,
                "%s is planned as %s but the server runs it as %s: relaunch it as planned (%s)"
                % (uid, planned_type, reported_type, XINFERENCE_STAGE),
            )
        abilities = description.get("model_ability") or entry.get("model_ability") or []
        try:
            if model_type is None:
                raise describe_failure or ProbeFailed("the server does not say its model_type", bad_answer=True)
            measured, value = self.probe(uid, model_type, abilities, describe_failure)
        except TtftExceeded as exc:
            value = "no content" if exc.ended_without_token else "ttft over %g s" % self.ttft_timeout
            return failed(value, self.ttft_diagnosis(uid, exc), exc.measured)
        except ProbeFailed as exc:
            evidence = self.dead_worker_evidence(uid, exc, describe_failure)
            answers = evidence.status is not None or self.gateway_answers()
            address = description.get("address") or entry.get("address")
            dead, diagnosis = self.diagnose(uid, evidence, answers, address)
            if not dead:
                diagnosis = self.diagnose(uid, exc, answers, address)[1]
            return failed(failure_value(exc, dead), diagnosis, exc.measured, dead)
        return make_check(name, "pass", value, None, measured, model_uid=uid, model_type=model_type), description

    def diagnose(self, uid, failure, gateway_answers, address=None):
        return diagnose(
            uid, failure, gateway_answers, endpoint=self.api.endpoint, timeout=self.api.timeout, address=address
        )

    def dead_worker_evidence(self, uid, failure, describe_failure):
        """The failure that shows a dead worker when the probe's own text does not (a stream's error
        event is only "The chat completion request failed"): describe's, before or after the probe."""
        if dead_worker_sign(failure.text):
            return failure
        if describe_failure is not None:
            return describe_failure if dead_worker_sign(describe_failure.text) else failure
        again = self.describe(uid)[1]
        return again if again is not None and dead_worker_sign(again.text) else failure

    def ttft_diagnosis(self, uid, exc):
        if exc.ended_without_token:
            return "%s streamed %d chunks without any content within max_tokens=%d: see the worker log" % (
                uid,
                exc.measured.get("chunks", 0),
                MAX_TOKENS,
            )
        return "first token took longer than ttft_timeout=%gs (%.2f s): the model is overloaded or running on CPU" % (
            self.ttft_timeout,
            exc.waited,
        )

    def probe(self, uid, model_type, abilities, describe_failure):
        """(measured, value) of the probe of the model's kind, or ProbeFailed."""
        probe = probe_for(model_type, abilities)
        if probe is not None:
            return self.prober.run(uid, probe)
        if describe_failure is not None:
            raise describe_failure
        return {}, "no probe for %s" % model_type


def worker_died_diagnosis(uids):
    return (
        "%s is no longer listed because its worker died (Xinference records it as unexpectedly terminated): "
        "relaunch it (%s)" % (uids, HEAL_HINT)
    )


def failure_value(failure, dead_worker):
    """The short value of a failed model check."""
    if dead_worker:
        return "dead worker"
    if failure.timeout:
        return "timeout"
    if failure.transport:
        return "no answer"
    if failure.bad_answer:
        return "unexpected answer"
    if failure.status not in (None, 200):
        return "HTTP %s" % failure.status
    return "failed"


def planned_models(models):
    """The module's `models` option checked: XinferenceError (one line) for bad input."""
    if not models:
        raise XinferenceError("models is empty: list at least one {model_uid: ...} to verify")
    seen = set()
    for model in models:
        uid = model.get("model_uid")
        if not uid or not uid.strip():
            raise XinferenceError("every entry of models needs a non-empty model_uid")
        if uid in seen:
            raise XinferenceError("model_uid %s is listed twice in models" % uid)
        seen.add(uid)
    return models


def verify(api, models, ttft_timeout, clock=time.monotonic):
    """The module's result: every check, read-only."""
    if ttft_timeout <= 0:
        raise XinferenceError("ttft_timeout must be a positive number of seconds, not %g" % ttft_timeout)
    if api.timeout <= 0:
        raise XinferenceError("timeout must be a positive number of seconds, not %s" % api.timeout)
    return Verifier(api, ttft_timeout, clock).run(planned_models(models))
