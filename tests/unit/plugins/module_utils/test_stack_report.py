"""The verification report: GPU residency, host memory and Elasticsearch heap judged from what the
modules measured (GPU facts from the fake NVML through gpu.py, memory from a /proc/meminfo text),
and the report files and table rendered from them."""

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils import gpu, host_memory, stack_report
from testkit.nvml import MIB, FakeGpu, FakeNVML

pytestmark = pytest.mark.unit

MEMINFO = """MemTotal:       65536000 kB
MemFree:         1024000 kB
MemAvailable:   {available} kB
SwapTotal:       8388608 kB
SwapFree:        1048576 kB
"""


def memory(available_kib):
    return host_memory.host_memory_facts(MEMINFO.format(available=available_kib))


def gpu_host(fake_proc, processes):
    """GPU facts of a host with one 80 GB GPU and the given (pid, title, MiB) processes."""
    for pid, title, _mib in processes:
        fake_proc(pid, [title], "python")
    card = FakeGpu(
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-0",
        total_mib=81559,
        used_mib=sum(mib for _pid, _title, mib in processes),
        processes=[(pid, mib * MIB) for pid, _title, mib in processes],
    )
    return gpu.nvml_facts(FakeNVML([card]), proc_root=fake_proc.root)


def es_stats(heap_max_bytes, status=200):
    nodes = {
        "n1": {
            "name": "es01",
            "jvm": {"mem": {"heap_init_in_bytes": heap_max_bytes, "heap_max_in_bytes": heap_max_bytes}},
        }
    }
    return {"status": status, "json": {"nodes": nodes} if status == 200 else None, "msg": "OK"}


def by_name(report):
    return {item["name"]: item for item in report["checks"]}


def test_memory_is_judged_by_mem_available_and_swap_is_only_reported():
    # 4.7 % available with 7 GiB of swap in use: fails on MemAvailable, and says swap is no sign.
    low = stack_report.memory_check(memory(3072000), 10)
    high = stack_report.memory_check(memory(32768000), 10)

    assert low["verdict"] == "fail"
    assert "swap in use alone is no sign" in low["diagnosis"]
    assert high["verdict"] == "pass"
    assert high["measured"]["swap_used_mib"] == 7168
    assert high["value"] == "MemAvailable 32000/64000 MiB (50.0 %), swap used 7168 MiB"


def test_gpu_check_reports_used_and_free_memory_and_the_models_each_gpu_holds(fake_proc):
    facts = gpu_host(fake_proc, [(41, "Model: bge-m3-0", 2213), (42, "/usr/bin/python3 train.py", 1000)])

    result = stack_report.gpu_check(facts)

    assert result["verdict"] == "pass"
    assert result["value"] == "[0] 3213/81559 MiB used, 78346 free (bge-m3 rep0 2213 MiB)"
    assert result["measured"]["gpus"][0]["models"] == ["bge-m3"]


def test_gpu_check_is_skipped_with_the_reason_on_a_host_without_gpu():
    result = stack_report.gpu_check(gpu.no_gpu_facts("nvidia-smi: not found in PATH"))

    assert result["verdict"] == "skip"
    assert "nvidia-smi: not found in PATH" in result["value"]


def test_a_gpu_model_without_a_live_process_is_the_dead_worker_sign(fake_proc, tmp_path):
    cluster = {"gpu-a": gpu_host(fake_proc, [(41, "Model: bge-m3-0", 2213)])}
    models = {
        "bge-m3": {"model_type": "embedding", "accelerators": ["0"], "address": "10.0.0.2:40001"},
        "deepseek-r1-distill-qwen-14b": {"model_type": "LLM", "accelerators": ["0"], "address": "10.0.0.2:40002"},
        "cpu-model": {"model_type": "embedding", "accelerators": [], "address": "10.0.0.2:40003"},
    }

    checks = {item["name"]: item for item in stack_report.placement_checks(models, cluster)}

    assert sorted(checks) == ["gpu process bge-m3", "gpu process deepseek-r1-distill-qwen-14b"]
    assert checks["gpu process bge-m3"]["verdict"] == "pass"
    assert checks["gpu process bge-m3"]["value"] == "gpu-a GPU 0: 2213 MiB"
    llm = checks["gpu process deepseek-r1-distill-qwen-14b"]
    assert llm["verdict"] == "fail"
    assert "its worker process died" in llm["diagnosis"]


def test_xinference_41_replica_titles_are_matched_by_uid(fake_proc):
    # Xinference 4.1 titles replicas "Model: <uid>-rep<N>"; a uid ending in digits is no replica.
    cluster = {
        "gpu-a": gpu_host(
            fake_proc,
            [(41, "Model: bge-m3-rep0", 2213), (42, "Model: llama-2-rep0", 9000), (43, "Model: llama-2-rep1", 9000)],
        )
    }
    models = {"bge-m3": {"accelerators": ["0"]}, "llama-2": {"accelerators": ["0"]}, "llama": {"accelerators": ["0"]}}

    checks = {item["name"]: item for item in stack_report.placement_checks(models, cluster)}

    assert checks["gpu process bge-m3"]["verdict"] == "pass"
    assert checks["gpu process llama-2"]["value"] == "gpu-a GPU 0: 9000 MiB, gpu-a GPU 0: 9000 MiB"
    assert checks["gpu process llama"]["verdict"] == "fail"
    assert "llama rep" not in stack_report.gpu_check(cluster["gpu-a"])["value"]
    assert "llama-2 rep1 9000 MiB" in stack_report.gpu_check(cluster["gpu-a"])["value"]


def test_a_gpu_model_on_another_gpu_than_assigned_fails(fake_proc):
    cluster = {"gpu-a": gpu_host(fake_proc, [(41, "Model: bge-m3-0", 2213)])}

    (result,) = stack_report.placement_checks({"bge-m3": {"accelerators": ["1"]}}, cluster)

    assert result["verdict"] == "fail"
    assert "other than [1]" in result["diagnosis"]


@pytest.mark.parametrize(
    ("heap", "verdict"),
    [(512 * MIB, "pass"), (2048 * MIB, "pass"), (2049 * MIB, "fail"), (31 * 1024 * MIB, "fail")],
)
def test_es_heap_is_judged_against_the_cap(heap, verdict):
    result = stack_report.es_heap_check(es_stats(heap), "2g")

    assert result["verdict"] == verdict
    assert result["measured"]["cap_bytes"] == 2048 * MIB


def test_es_that_refuses_the_password_says_which_variable_to_set():
    result = stack_report.es_heap_check(es_stats(0, status=401), "2g")

    assert result["verdict"] == "fail"
    assert "stack_verify_es_password" in result["diagnosis"]


def test_a_cap_that_is_no_jvm_size_is_refused():
    with pytest.raises(stack_report.ReportError, match="JVM size"):
        stack_report.es_heap_check(es_stats(MIB), "2 GB")


XINFERENCE_DEAD = {
    "checks": [
        {
            "name": "gateway",
            "verdict": "pass",
            "value": "1 listed, 1/1 planned (3 ms)",
            "diagnosis": None,
            "measured": {},
        },
        {
            "name": "model lab-chat",
            "verdict": "fail",
            "value": "chat refused",
            "diagnosis": "gateway lists lab-chat but its worker does not answer",
            "measured": {},
            "dead_worker": True,
            "model_uid": "lab-chat",
        },
    ],
    "dead_workers": ["lab-chat"],
    "models": {},
}
XINFERENCE_HEALTHY = {
    "checks": [
        {
            "name": "gateway",
            "verdict": "pass",
            "value": "1 listed, 1/1 planned (2 ms)",
            "diagnosis": None,
            "measured": {},
        },
        {
            "name": "model lab-chat",
            "verdict": "pass",
            "value": "ttft 0.31 s",
            "diagnosis": None,
            "measured": {"ttft_s": 0.31},
            "dead_worker": False,
            "model_uid": "lab-chat",
        },
    ],
    "dead_workers": [],
    "models": {"lab-chat": {"accelerators": []}},
}


def test_a_healed_model_keeps_its_first_diagnosis_beside_the_new_probe():
    results = {
        "xinference": XINFERENCE_HEALTHY,
        "xinference_first": XINFERENCE_DEAD,
        "healed": [{"model_uid": "lab-chat", "changed": True, "healed": True}],
    }

    checks = by_name(stack_report.build_report("sup", results, None, {}, 10))

    assert checks["model lab-chat"]["verdict"] == "pass"
    assert checks["model lab-chat"]["value"] == "healed: dead worker (chat refused); after relaunch: ttft 0.31 s"


def test_a_model_the_supervisor_dropped_with_its_worker_is_relaunched_and_says_so():
    dropped = {
        "checks": [
            {
                "name": "model lab-chat",
                "verdict": "fail",
                "value": "not listed",
                "model_uid": "lab-chat",
                "measured": {},
            }
        ]
    }
    results = {
        "xinference": XINFERENCE_HEALTHY,
        "xinference_first": dropped,
        "healed": [{"model_uid": "lab-chat", "changed": True, "healed": False}],
    }

    checks = by_name(stack_report.build_report("sup", results, None, {}, 10))

    assert checks["model lab-chat"]["value"] == "healed: failing (not listed); after relaunch: ttft 0.31 s"


def test_a_model_healing_did_not_relaunch_is_named_so():
    results = {"xinference": XINFERENCE_DEAD, "xinference_first": XINFERENCE_DEAD, "healed": []}

    checks = by_name(stack_report.build_report("sup", results, None, {}, 10))

    assert checks["model lab-chat"]["verdict"] == "fail"
    assert checks["model lab-chat"]["value"].startswith("healed: dead worker, NOT relaunched (chat refused)")


def test_a_model_that_answers_again_before_its_relaunch_says_so():
    results = {"xinference": XINFERENCE_HEALTHY, "xinference_first": XINFERENCE_DEAD, "healed": []}

    checks = by_name(stack_report.build_report("sup", results, None, {}, 10))

    assert checks["model lab-chat"]["value"] == (
        "healed: dead worker, answering again without a relaunch (chat refused); after relaunch: ttft 0.31 s"
    )


def test_a_report_without_healing_keeps_the_dead_worker_failure():
    report = stack_report.build_report("sup", {"xinference": XINFERENCE_DEAD}, None, {}, 10)

    assert report["verdict"] == "fail"
    assert by_name(report)["model lab-chat"]["diagnosis"] == "gateway lists lab-chat but its worker does not answer"


def test_ragflow_e2e_names_its_backend_and_fails_when_something_was_left_behind():
    steps = [{"name": "create_dataset", "verdict": "pass", "seconds": 0.05, "detail": ""}]
    passed = stack_report.ragflow_check(
        {"passed": True, "steps": steps, "cleanup": {"deleted": ["d1"], "left": []}}, "stand-in"
    )
    leftover = stack_report.ragflow_check(
        {"passed": True, "steps": steps, "cleanup": {"deleted": [], "left": ["d1"]}}, "stand-in"
    )

    assert passed["verdict"] == "pass"
    assert passed["value"] == "stand-in: create_dataset pass 0.1s"
    assert leftover["verdict"] == "fail"
    assert "NOT deleted: d1" in leftover["value"]


def test_a_host_that_failed_a_stage_is_reported_with_the_stage_and_message():
    failure = {"stage": "models", "task": "Download x", "msg": "the mirror is not reachable: Connection refused"}

    report = stack_report.build_report("gpu-c", {}, failure, {}, 10)

    assert report["verdict"] == "fail"
    (only,) = report["checks"]
    assert only["name"] == "stage models"
    assert only["value"] == "failed at task 'Download x'"
    assert "Connection refused" in only["diagnosis"]
    assert report["file"] == "gpu-c"


@pytest.mark.parametrize(
    ("host", "stem"),
    [
        ("ragstack-lab-gpu-1", "ragstack-lab-gpu-1"),
        ("gpu-a.example.com", "gpu-a.example.com"),
        ("../escaped", "___escaped"),
        ("/etc/cron.d/x", "_etc_cron.d_x"),
        (".hidden", "_hidden"),
        ("..", "__"),
        ("host with space", "host_with_space"),
        ("", "_"),
    ],
)
def test_report_file_names_stay_inside_the_folder(host, stem):
    assert stack_report.report_file_stem(host) == stem


def test_table_has_a_summary_line_aligned_rows_and_the_diagnoses_below(fake_proc):
    results = {"memory": memory(32768000), "gpu": gpu.no_gpu_facts("no driver"), "xinference": XINFERENCE_DEAD}

    table = stack_report.render_table(stack_report.build_report("sup", results, None, {}, 10)).splitlines()

    assert table[0] == "sup: FAIL (2 pass, 1 fail, 1 skip)"
    assert table[1].split() == ["check", "verdict", "value"]
    columns = {line.index(verdict) for line in table[2:6] for verdict in ("PASS", "FAIL", "SKIP") if verdict in line}
    assert len(columns) == 1
    assert table[-1] == "  ! model lab-chat: gateway lists lab-chat but its worker does not answer"


def test_no_check_at_all_is_a_failure():
    assert stack_report.build_report("h", {}, None, {}, 10)["verdict"] == "fail"


XINFERENCE_NOT_RUNNING = {
    "checks": [
        {
            "name": "gateway",
            "verdict": "fail",
            "value": "not reachable",
            "diagnosis": "Xinference does not answer at http://127.0.0.1:9997 (Connection refused): is it running "
            "there? see the xinference stage",
            "measured": {},
        },
        {"name": "model lab-chat", "verdict": "skip", "value": "not checked: the gateway check failed"},
    ],
    "models": {"lab-chat": {}},
}
ES_NOT_RUNNING = {"status": -1, "json": None, "msg": "Status code was -1 and not [200]: Connection refused"}


def test_check_mode_on_a_fresh_host_reports_services_not_running_as_skipped_with_the_reason():
    results = {"memory": memory(32768000), "xinference": XINFERENCE_NOT_RUNNING, "es": ES_NOT_RUNNING}

    report = stack_report.build_report("sup", results, None, {}, 10, check_mode=True)

    checks = by_name(report)
    assert report["verdict"] == "pass"
    assert report["counts"] == {"pass": 1, "fail": 0, "skip": 3}
    assert checks["gateway"]["value"] == (
        "check mode, not running yet: Xinference does not answer at http://127.0.0.1:9997 (Connection refused): "
        "is it running there? see the xinference stage; a real run's xinference stage starts it"
    )
    assert checks["elasticsearch heap"]["value"].startswith(
        "check mode, not running yet: Elasticsearch does not answer (Status code was -1"
    )


def test_a_real_run_fails_the_same_services_and_check_mode_fails_what_answered_wrongly():
    results = {"xinference": XINFERENCE_NOT_RUNNING, "es": ES_NOT_RUNNING}

    real = by_name(stack_report.build_report("sup", results, None, {}, 10))
    refused = by_name(stack_report.build_report("sup", {"es": es_stats(0, status=401)}, None, {}, 10, check_mode=True))

    assert (real["gateway"]["verdict"], real["elasticsearch heap"]["verdict"]) == ("fail", "fail")
    assert refused["elasticsearch heap"]["verdict"] == "fail"
