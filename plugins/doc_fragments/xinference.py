# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of every module that calls Xinference's RESTful API."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  endpoint:
    description:
      - Xinference's HTTP address (the supervisor's in a cluster), for example V(http://127.0.0.1:9997).
    type: str
    required: true
  api_key:
    description:
      - >-
        Key sent as C(Authorization: Bearer). Xinference 4.x requires one unless the server runs
        with C(XINFERENCE_AUTH_ADVANCED=0).
    type: str
  validate_certs:
    description:
      - Verify the TLS certificate of an V(https) O(endpoint).
    type: bool
    default: true
"""
