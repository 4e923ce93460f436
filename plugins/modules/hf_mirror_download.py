#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_mirror_download
short_description: Download a Hugging Face repo through a mirror, resumably and verifiably
version_added: 0.1.0
description:
  - Brings O(local_dir) to the commit that O(revision) points at on a Hugging Face mirror such as
    U(https://hf-mirror.com), fetching only the files that are missing or differ.
  - Talks to the mirror's Hub API directly (revision, recursive tree, C(resolve) with HTTP C(Range)) instead
    of through huggingface_hub, so a killed or dropped download resumes from what is on disk, large files
    come over several connections at once, and proxy variables do not get in the way.
  - Files are assembled under C(local_dir/.cache/huggingface/download/) and renamed into place only after
    their size and content hash (sha256 for LFS files, git oid for the others) match the repo's listing, so
    a final path never holds a partial or corrupt file.
  - The result is a normal huggingface_hub C(local_dir), with the same C(.metadata) files, so C(hf download),
    C(snapshot_download(local_dir=...)) and transformers treat it as up to date, and a folder made by
    C(hf download) is accepted without downloading again.
  - Where the mirror answers C(resolve) of an LFS file with a redirect to a CDN host and a signed URL, as
    huggingface.co does, the module follows it itself; O(token) goes to the mirror's own origin only, the
    parts of a file share one signed URL, and when the CDN refuses it (HTTP 403, expired) the file is resolved
    again and continues from the bytes on disk.
  - Before any request the module checks that O(local_dir), its C(.cache) and the folder of O(progress_file)
    can be written (a file in the way, no permission), in check mode too, so check mode fails where the real
    run would.
  - With O(progress_file), the module keeps a small JSON file with bytes done and total, rate and ETA, for
    a playbook that runs it with C(async) to poll and print.
author:
  - llmops.ragstack developers (@llmops)
options:
  repo_id:
    description: The repo, as C(owner/name).
    type: str
    required: true
  repo_type:
    description: Kind of repo.
    type: str
    choices: [model, dataset]
    default: model
  revision:
    description: Branch, tag or commit sha.
    type: str
    default: main
  local_dir:
    description: Folder to download into; created when missing.
    type: path
    required: true
  endpoint:
    description: Base URL of the mirror (or of the Hub itself).
    type: str
    default: https://hf-mirror.com
  allow_patterns:
    description:
      - Download only files matching one of these fnmatch globs (relative to the repo root).
        A pattern ending in C(/) matches everything below that folder.
      - Patterns that select no file at all fail the task.
    type: list
    elements: str
  ignore_patterns:
    description: Leave out files matching one of these globs.
    type: list
    elements: str
  token:
    description:
      - A Hugging Face read token, sent as a bearer token in the C(Authorization) header.
      - Gated and private repos need one, since a mirror has no login of its own.
    type: str
  max_workers:
    description: Files downloaded at the same time.
    type: int
    default: 8
  connections_per_file:
    description:
      - Parallel ranged connections for one large file; each connection gets a part of at least 4 MiB.
      - Mirrors cap the speed of each connection; more connections get past that cap.
    type: int
    default: 4
  timeout:
    description: Seconds to wait for a connection or for the next bytes of an answer; more than V(0).
    type: float
    default: 30
  retries:
    description:
      - Attempts per file part after a dropped connection or a 5xx answer (V(0) or more).
      - Each attempt resumes where the last one stopped.
      - A signed CDN URL that expired does not count as an attempt; the file is resolved again at once.
    type: int
    default: 5
  use_proxy:
    description:
      - Whether to honour C(http_proxy), C(https_proxy), C(ALL_PROXY) and C(NO_PROXY) (either case).
      - The default V(false) ignores them all, because proxies that intercept TLS or speak SOCKS break
        mirror downloads. The CA bundle variables (C(REQUESTS_CA_BUNDLE), C(CURL_CA_BUNDLE), C(SSL_CERT_FILE))
        are honoured either way.
    type: bool
    default: false
  ca_bundle:
    description: CA certificates file to verify the mirror's TLS certificate with.
    type: path
  verify:
    description:
      - How a file already in O(local_dir) is judged up to date.
      - V(size) trusts huggingface_hub's metadata when it names the same content and the size matches;
        files without such metadata are hashed once.
      - V(sha256) hashes every file (sha256 for LFS files, git oid for others) and replaces any that differ.
    type: str
    choices: [size, sha256]
    default: size
  force:
    description: Download every selected file again.
    type: bool
    default: false
  progress_file:
    description:
      - JSON file kept up to date while downloading (about once a second) with C(bytes_done), C(bytes_total),
        C(rate_bytes_per_s), C(eta_seconds), C(files_done), C(files_total) and C(state)
        (V(running), V(done) or V(failed)).
    type: path
attributes:
  check_mode:
    support: full
    details: Resolves the commit and lists what would be downloaded and how many bytes, writing nothing.
  diff_mode:
    support: full
    details: The plan, each file to fetch as it is on disk (before) and as the commit has it (after), and the bytes.
  idempotent:
    support: full
    details: >-
      Reports C(changed) only when file content was written; a run that fails after writing some files
      reports C(changed=true) and RV(files_downloaded).
extends_documentation_fragment:
  - llmops.ragstack.attributes
requirements:
  - C(requests) on the managed host
notes:
  - Give each repo a O(local_dir) of its own, since files of the repo replace what is at their paths.
  - Two runs must not download into the same O(local_dir) at the same time.
  - huggingface_hub is not used, so C(HF_ENDPOINT), C(HF_TOKEN) and the other C(HF_HUB_*) variables do
    not apply; set O(endpoint) and O(token).
  - Files that a newer commit no longer has are left in O(local_dir), as C(hf download) leaves them.
seealso:
  - name: Hugging Face Hub HTTP endpoints
    description: The revision, tree and resolve endpoints this module uses.
    link: https://huggingface.co/docs/hub/api
"""

EXAMPLES = r"""
- name: Download bge-m3 through hf-mirror.com
  llmops.ragstack.hf_mirror_download:
    repo_id: BAAI/bge-m3
    local_dir: /data/models/bge-m3

- name: Only the safetensors weights and configs of a pinned commit, checking every hash
  llmops.ragstack.hf_mirror_download:
    repo_id: deepseek-ai/DeepSeek-R1-Distill-Qwen-14B
    revision: 1df8507178afcc1bef68cd8c393f61a886323761
    local_dir: /data/models/deepseek-r1-distill-qwen-14b
    allow_patterns: ["*.safetensors", "*.json", "tokenizer*"]
    verify: sha256

- name: A gated model, in the background, with progress to poll
  llmops.ragstack.hf_mirror_download:
    repo_id: meta-llama/Llama-3.1-8B-Instruct
    local_dir: /data/models/llama-3.1-8b-instruct
    token: "{{ vault_hf_token }}"
    progress_file: /data/models/.llama-3.1-8b-instruct.progress.json
  async: 7200
  poll: 0
"""

RETURN = r"""
commit:
  description: The commit sha O(revision) resolved to.
  returned: always
  type: str
  sample: 5617a9f61b028005a4858fdac845db406aefb181
revision:
  description: The revision asked for.
  returned: always
  type: str
  sample: main
local_dir:
  description: The folder downloaded into.
  returned: always
  type: str
files_total:
  description: Files selected by the patterns.
  returned: always
  type: int
bytes_total:
  description: Size of the selected files.
  returned: always
  type: int
files_skipped:
  description: Selected files already up to date.
  returned: always
  type: int
files_to_download:
  description: Selected files that were (or in check mode would be) downloaded.
  returned: always
  type: int
bytes_to_download:
  description: Bytes to fetch, less what earlier interrupted runs left on disk.
  returned: always
  type: int
proxy_variables_ignored:
  description: Proxy variables set in the module's environment that the download did not use (O(use_proxy=false)).
  returned: always
  type: list
  elements: str
  sample: [https_proxy, ALL_PROXY]
diff:
  description: The plan (files to fetch or replace, and the bytes), when there is something to fetch.
  returned: when files are to be downloaded
  type: dict
files_downloaded:
  description: Files written by this run (V(0) in check mode); also returned when the run failed after writing some.
  returned: always
  type: int
bytes_downloaded:
  description: Bytes fetched from the mirror by this run.
  returned: always
  type: int
seconds:
  description: Wall time of the run.
  returned: always
  type: float
mb_per_s:
  description: RV(bytes_downloaded) in MB (10^6 bytes) per second of the run.
  returned: always
  type: float
files:
  description: Every selected file and what was done with it.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Path in the repo.
      type: str
    size:
      description: Size in bytes.
      type: int
    action:
      description: V(download) or V(skip).
      type: str
    reason:
      description: >-
        Why: V(missing), V(size differs), V(hash differs), V(force), V(metadata), V(metadata of older commit)
        or V(hash matches).
      type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.ragstack.plugins.module_utils.hf_errors import (
    REQUESTS_IMPORT_ERROR,
    DownloadFailed,
    MirrorError,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_mirror import (
    API_REPO_TYPES,
    DEFAULT_ENDPOINT,
    VERIFY_MODES,
    MirrorClient,
    download_repo,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repo_id=dict(type="str", required=True),
            repo_type=dict(type="str", default="model", choices=list(API_REPO_TYPES)),
            revision=dict(type="str", default="main"),
            local_dir=dict(type="path", required=True),
            endpoint=dict(type="str", default=DEFAULT_ENDPOINT),
            allow_patterns=dict(type="list", elements="str"),
            ignore_patterns=dict(type="list", elements="str"),
            token=dict(type="str", no_log=True),
            max_workers=dict(type="int", default=8),
            connections_per_file=dict(type="int", default=4),
            timeout=dict(type="float", default=30),
            retries=dict(type="int", default=5),
            use_proxy=dict(type="bool", default=False),
            ca_bundle=dict(type="path"),
            verify=dict(type="str", default="size", choices=list(VERIFY_MODES)),
            force=dict(type="bool", default=False),
            progress_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if REQUESTS_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    params = module.params
    for name in ("max_workers", "connections_per_file"):
        if params[name] < 1:
            module.fail_json(msg="%s must be at least 1, not %d" % (name, params[name]))
    if params["retries"] < 0:
        module.fail_json(msg="retries must be 0 or more, not %d" % params["retries"])
    if not params["timeout"] > 0:
        module.fail_json(msg="timeout must be more than 0 seconds, not %s" % params["timeout"])
    try:
        client = MirrorClient(
            params["endpoint"],
            params["repo_type"],
            params["repo_id"],
            token=params["token"],
            timeout=params["timeout"],
            use_proxy=params["use_proxy"],
            ca_bundle=params["ca_bundle"],
        )
        result = download_repo(
            client,
            params["local_dir"],
            revision=params["revision"],
            allow_patterns=params["allow_patterns"],
            ignore_patterns=params["ignore_patterns"],
            verify=params["verify"],
            force=params["force"],
            max_workers=params["max_workers"],
            connections_per_file=params["connections_per_file"],
            retries=params["retries"],
            progress_file=params["progress_file"],
            check_mode=module.check_mode,
        )
    except DownloadFailed as exc:
        module.fail_json(msg=str(exc), changed=True, files_downloaded=exc.written, bytes_downloaded=exc.bytes_fetched)
    except MirrorError as exc:
        module.fail_json(msg=str(exc), changed=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
