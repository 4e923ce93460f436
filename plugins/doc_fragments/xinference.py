# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of every module that calls Xinference's RESTful API (argument spec:
module_utils/xinference_api.py xinference_connection_argument_spec and XINFERENCE_CONNECTION_RULES)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  endpoint:
    description:
      - Xinference's HTTP address (the supervisor's in a cluster), for example V(http://127.0.0.1:9997).
      - >-
        Before trusting any answer the module asks C(GET /v1/cluster/auth), which every Xinference 4.x
        answers without credentials; anything else at the address (a web UI answering HTML to every
        path, another API) fails at once, naming the URL and what answered.
    type: str
    required: true
  username:
    description:
      - >-
        An Xinference user to authenticate as, with O(password): the module logs in with C(POST /token)
        and logs in again when the token (30 minutes by default) runs out during a long load.
      - >-
        Launching and terminating models (C(models:write)) and listing workers (C(admin)) need a user:
        Xinference 4.x refuses them to API keys with HTTP 403. The admin created by the first-run setup
        (C(POST /v1/admin/setup)) has every scope.
      - Mutually exclusive with O(api_key).
    type: str
  password:
    description:
      - The password of O(username).
    type: str
  api_key:
    description:
      - >-
        API key (C(sk-...), from C(POST /v1/admin/keys)) sent as C(Authorization: Bearer), for listing,
        describing and inference only: Xinference grants API keys no other scope.
      - >-
        Xinference 4.x requires a credential unless the server runs with C(XINFERENCE_AUTH_ADVANCED=0);
        a server with authentication on and no credential given fails at once, saying which one is needed.
      - A refused credential (HTTP 401 or 403) is never retried.
    type: str
  validate_certs:
    description:
      - Verify the TLS certificate of an V(https) O(endpoint).
    type: bool
    default: true
"""
