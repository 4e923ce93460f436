# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verification report of one host: the checks the stack_verify role measured, judged, and its
plain-text table. The filters of plugins/filter/stack_report.py run it on the controller; the role
writes the JSON and the Markdown (templates/report.md.j2) with Ansible's copy and template.

Inputs are what the other modules returned (llmops.ragstack.gpu_facts, xinference_verify,
ragflow_e2e) and what Elasticsearch's node stats API answered. Checks 1-3 (gateway, models, dead
workers) and 7 (RAGFlow end to end) come judged by their modules; this file judges GPU residency,
host memory and the Elasticsearch heap, and renders everything.
"""

from __future__ import annotations

import re

from ansible_collections.llmops.ragstack.plugins.module_utils.host_memory import (
    DEFAULT_MIN_MEM_AVAILABLE_PERCENT,
    mem_available_verdict,
)

PASS = "pass"
FAIL = "fail"
SKIP = "skip"
MIB = 1024 * 1024
JVM_UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}


CHECK_MODE_NOT_RUNNING = "check mode, not running yet"


class ReportError(Exception):
    """Input the report cannot be built from; the message says which."""


def check(name, verdict, value, diagnosis=None, measured=None):
    return {"name": name, "verdict": verdict, "value": value, "diagnosis": diagnosis, "measured": measured or {}}


def failure_check(failure):
    """A host that failed a stage before the verification reached it."""
    return check(
        "stage %s" % failure.get("stage", "?"),
        FAIL,
        "failed at task '%s'" % failure.get("task", "?"),
        "%s. Fix the cause and run the playbook again: the hosts that converged change nothing."
        % failure.get("msg", "no message"),
    )


def memory_check(memory, min_percent):
    """Check 5: judged by host_memory's MemAvailable rule; swap in use is reported, never a failure by itself."""
    passed, value, diagnosis = mem_available_verdict(memory, min_percent)
    measured = {
        "mem_available_mib": memory["mem_available_mib"],
        "mem_total_mib": memory["mem_total_mib"],
        "mem_available_percent": memory["mem_available_percent"],
        "swap_used_mib": memory["swap_used_mib"],
        "min_mem_available_percent": min_percent,
    }
    return check("host memory", PASS if passed else FAIL, value, diagnosis, measured)


def model_processes(device):
    return [process for process in device.get("processes") or [] if process.get("model_uid")]


def process_label(process):
    """The model uid and, for a replica, its index (gpu_facts parsed both from the process title)."""
    replica = process.get("model_replica")
    return process["model_uid"] if replica is None else "%s rep%d" % (process["model_uid"], replica)


def gpu_check(gpu):
    """Check 4, this host's part: per-GPU used/free and the model processes each GPU holds."""
    devices = gpu.get("gpu_devices") or []
    if not devices:
        return check(
            "gpu",
            SKIP,
            "0 GPU(s): %s" % (gpu.get("gpu_unavailable_reason") or "none found"),
            measured={"gpu_count": 0},
        )
    parts = []
    for device in devices:
        models = ", ".join(
            "%s %s MiB" % (process_label(process), process.get("used_memory_mib"))
            for process in model_processes(device)
        )
        parts.append(
            "[%d] %d/%d MiB used, %d free%s"
            % (
                device["index"],
                device["memory_used_mib"],
                device["memory_total_mib"],
                device["memory_free_mib"],
                " (%s)" % models if models else "",
            )
        )
    measured = {
        "gpu_count": len(devices),
        "gpus": [
            {
                "index": device["index"],
                "name": device.get("name"),
                "memory_used_mib": device["memory_used_mib"],
                "memory_free_mib": device["memory_free_mib"],
                "models": sorted(process["model_uid"] for process in model_processes(device)),
            }
            for device in devices
        ],
    }
    return check("gpu", PASS, "; ".join(parts), measured=measured)


def placement_checks(models, cluster_gpus):
    """Check 4, the models' part: each model Xinference placed on GPUs (describe's `accelerators`)
    has a live compute process holding memory on one of those GPUs, on some GPU host."""
    checks = []
    for uid, description in sorted(models.items()):
        expected = sorted(int(index) for index in (description or {}).get("accelerators") or [])
        if not expected:
            continue
        found = [
            (host, device["index"], process.get("used_memory_mib") or 0)
            for host, gpu in sorted(cluster_gpus.items())
            for device in gpu.get("gpu_devices") or []
            for process in model_processes(device)
            if process["model_uid"] == uid
        ]
        on_expected = [entry for entry in found if entry[1] in expected and entry[2] > 0]
        measured = {"expected_gpus": expected, "processes": [list(entry) for entry in found]}
        name = "gpu process %s" % uid
        if on_expected:
            value = ", ".join("%s GPU %d: %d MiB" % entry for entry in on_expected)
            checks.append(check(name, PASS, value, measured=measured))
        elif found:
            value = ", ".join("%s GPU %d: %d MiB" % entry for entry in found)
            checks.append(
                check(
                    name,
                    FAIL,
                    value,
                    "the model runs on GPU(s) other than %s that Xinference assigned, or holds no memory: "
                    "terminate and relaunch it" % expected,
                    measured,
                )
            )
        else:
            checks.append(
                check(
                    name,
                    FAIL,
                    "no GPU process titled 'Model: %s-rep<N>' on any GPU host (expected on GPU %s)" % (uid, expected),
                    "Xinference lists the model on a GPU but no process holds GPU memory for it: its worker "
                    "process died (a dead worker); terminate and relaunch it (stack_verify_heal: true)",
                    measured,
                )
            )
    return checks


def jvm_bytes(size):
    match = re.match(r"^\s*(\d+)\s*([kKmMgG]?)\s*$", str(size))
    if not match:
        raise ReportError("es_heap_cap must be a JVM size such as 512m or 2g, not %r" % size)
    return int(match.group(1)) * JVM_UNITS[match.group(2).lower()]


def es_heap_check(es, cap, check_mode=False):
    """Check 6: the heap each Elasticsearch node's JVM runs with (_nodes/stats/jvm) is within the cap."""
    cap_bytes = jvm_bytes(cap)
    status = es.get("status")
    nodes = (es.get("json") or {}).get("nodes") if isinstance(es.get("json"), dict) else None
    if check_mode and (not isinstance(status, int) or status < 100):
        # ansible.builtin.uri reports -1 when nothing answered: on a fresh host in check mode, the
        # ragflow stage has not started Elasticsearch, and only a real run can measure its heap.
        return check(
            "elasticsearch heap",
            SKIP,
            "%s: Elasticsearch does not answer (%s); a real run's ragflow stage starts it"
            % (CHECK_MODE_NOT_RUNNING, es.get("msg") or "no answer"),
        )
    if status != 200 or not nodes:
        reason = es.get("msg") or "HTTP %s" % status
        diagnosis = "Elasticsearch's node stats API did not answer (%s)" % reason
        if status == 401:
            diagnosis += ": set stack_verify_es_password (ragflow_elastic_password)"
        else:
            diagnosis += ": check the es01 container (docker compose logs es01) and stack_verify_es_url"
        return check("elasticsearch heap", FAIL, "no node stats: %s" % reason, diagnosis)
    heaps = {
        node.get("name", node_id): node.get("jvm", {}).get("mem", {}).get("heap_max_in_bytes")
        for node_id, node in sorted(nodes.items())
    }
    over = {name: heap for name, heap in heaps.items() if heap is None or heap > cap_bytes}
    value = ", ".join(
        "%s heap max %s" % (name, "unknown" if heap is None else "%d MiB" % (heap // MIB))
        for name, heap in sorted(heaps.items())
    )
    value += " (cap %s)" % cap
    measured = {"heap_max_bytes": heaps, "cap_bytes": cap_bytes}
    if not over:
        return check("elasticsearch heap", PASS, value, measured=measured)
    return check(
        "elasticsearch heap",
        FAIL,
        value,
        "the JVM runs with more heap than the cap, so it can starve the host: set ragflow_es_heap and "
        "redeploy (the role recreates es01 with -Xms/-Xmx)",
        measured,
    )


def ragflow_check(e2e, backend):
    """Check 7, judged by llmops.ragstack.ragflow_e2e; the value names the steps and what served them."""
    if e2e.get("skipped"):
        return check("ragflow e2e", SKIP, e2e.get("msg") or "skipped", measured={"backend": backend})
    steps = e2e.get("steps") or []
    value = "%s: %s" % (
        backend,
        ", ".join("%s %s %.1fs" % (step["name"], step["verdict"], step.get("seconds") or 0) for step in steps),
    )
    cleanup = e2e.get("cleanup") or {}
    if cleanup.get("left"):
        value += "; NOT deleted: %s" % ", ".join(map(str, cleanup["left"]))
    measured = {"backend": backend, "steps": steps, "cleanup": cleanup}
    verdict = PASS if e2e.get("passed") and not cleanup.get("left") else FAIL
    diagnosis = None
    if verdict == FAIL:
        diagnosis = e2e.get("diagnosis") or "the test objects could not all be deleted: delete them by hand"
    return check("ragflow e2e", verdict, value, diagnosis, measured)


def relaunched_models(healed):
    """Uids the healing launched again: healed (a dead worker's model, still listed) or changed (one
    the supervisor had dropped with its worker, launched afresh)."""
    return {item.get("model_uid") for item in healed or [] if item.get("changed")}


def not_running_in_check_mode(item):
    """The gateway check of xinference_verify when nothing answered at the endpoint (its value is
    "not reachable"), made a skip: in check mode on a fresh host the xinference stage started nothing."""
    return check(
        item["name"],
        SKIP,
        "%s: %s; a real run's xinference stage starts it" % (CHECK_MODE_NOT_RUNNING, item.get("diagnosis")),
        measured=item.get("measured"),
    )


def xinference_checks(results, check_mode=False):
    """Checks 1-3 as xinference_verify judged them; a model that failed the first probe and was
    healed during the run says so, with that first probe's value and numbers."""
    final = results.get("xinference") or {}
    first_failures = {
        item.get("model_uid"): item
        for item in (results.get("xinference_first") or {}).get("checks") or []
        if item.get("model_uid") and item.get("verdict") == FAIL
    }
    relaunched = relaunched_models(results.get("healed"))
    checks = []
    for verified in final.get("checks") or []:
        item = dict(verified)
        if check_mode and item["name"] == "gateway" and item.get("value") == "not reachable":
            checks.append(not_running_in_check_mode(item))
            continue
        first = first_failures.get(item.get("model_uid"))
        if first:
            cause = "dead worker" if first.get("dead_worker") else "failing"
            if item.get("model_uid") not in relaunched:
                # Xinference may move a dead worker's model to a live worker by itself meanwhile.
                cause += ", answering again without a relaunch" if item["verdict"] == PASS else ", NOT relaunched"
            item["value"] = "healed: %s (%s); after relaunch: %s" % (cause, first.get("value"), item.get("value"))
            item["measured"] = {**(item.get("measured") or {}), "before_heal": first.get("measured")}
        checks.append(
            check(item["name"], item["verdict"], item.get("value"), item.get("diagnosis"), item.get("measured"))
        )
    return checks


def report_file_stem(host):
    """The name of a host's report files inside the report folder: the host name with anything but
    letters, digits, '.', '_' and '-' replaced, and no leading dot, so that no host name (an
    inventory can hold '../escaped') writes outside the folder or hides its report."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", host)
    return re.sub(r"^\.+", lambda dots: "_" * len(dots.group(0)), stem) or "_"


def build_report(
    host,
    results,
    failure,
    cluster_gpus,
    min_mem_available_percent=DEFAULT_MIN_MEM_AVAILABLE_PERCENT,
    *,
    check_mode=False,
):
    """The report of `host`. In check mode a service that does not answer at all is reported as a
    skip with the reason (a fresh host: the stage that starts it only predicted), never as a failure."""
    checks = []
    if failure:
        checks.append(failure_check(failure))
    if results.get("memory"):
        checks.append(memory_check(results["memory"], min_mem_available_percent))
    if results.get("gpu") is not None:
        checks.append(gpu_check(results["gpu"]))
    if results.get("xinference"):
        checks.extend(xinference_checks(results, check_mode))
        checks.extend(placement_checks(results["xinference"].get("models") or {}, cluster_gpus))
    if results.get("es"):
        checks.append(es_heap_check(results["es"], results.get("es_heap_cap") or "2g", check_mode))
    if results.get("ragflow_e2e"):
        checks.append(ragflow_check(results["ragflow_e2e"], results.get("ragflow_backend") or "RAGFlow"))
    counts = {verdict: sum(1 for item in checks if item["verdict"] == verdict) for verdict in (PASS, FAIL, SKIP)}
    return {
        "host": host,
        "verdict": FAIL if counts[FAIL] or not checks else PASS,
        "counts": counts,
        "checks": checks,
        "file": report_file_stem(host),
    }


def summary_line(report):
    counts = report["counts"]
    return "%s: %s (%d pass, %d fail, %d skip)" % (
        report["host"],
        report["verdict"].upper(),
        counts[PASS],
        counts[FAIL],
        counts[SKIP],
    )


def render_table(report):
    """Plain text: a summary line, one row per check, then the diagnosis of each failed check."""
    rows = [("check", "verdict", "value")] + [
        (item["name"], item["verdict"].upper(), item["value"] or "") for item in report["checks"]
    ]
    widths = [max(len(row[column]) for row in rows) for column in (0, 1)]
    lines = [summary_line(report)]
    lines += ["  %s  %s  %s" % (row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]) for row in rows]
    lines += ["  ! %s: %s" % (item["name"], item["diagnosis"]) for item in report["checks"] if item["diagnosis"]]
    return "\n".join(lines)
