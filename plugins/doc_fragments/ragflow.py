# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of every module that authenticates to RAGFlow's web API as a user (argument spec:
module_utils/ragflow_api.py login_argument_spec)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  email:
    description:
      - Email of the RAGFlow user. A new RAGFlow has one user, V(admin@ragflow.io), created by its admin
        server with the password V(admin) (see M(llmops.ragstack.ragflow_user)).
    type: str
    required: true
  password:
    description:
      - The user's RAGFlow password, in plain text. It is sent RSA-encrypted with O(public_key).
      - With the C(llmops.ragstack.ragflow.api_key) options, needed unless O(api_key) is given.
    type: str
  public_key:
    description:
      - RSA public key that RAGFlow decrypts login passwords with, as PEM text or the path of a PEM
        file on the managed host.
      - When not set, the key RAGFlow ships in C(conf/public.pem) (and embeds in its web frontend)
        is used. Set it only if the deployment replaced C(conf/public.pem) and C(conf/private.pem).
    type: str
  validate_certs:
    description:
      - Verify the TLS certificate of an V(https) O(base_url).
    type: bool
    default: true
requirements:
  - C(cryptography) on the host the module runs on, to encrypt the login password
notes:
  - >-
    Which API generation a server speaks is read from the routes it serves: its health check and its
    login. RAGFlow v0.27 (C(/api/v1/system/healthz), C(/api/v1/auth/login)) and v0.24 and v0.25
    (C(/v1/system/healthz), C(/v1/user/login); v0.25 also answers C(/api/v1/system/healthz)) are supported.
  - >-
    A login gives the user a new session in RAGFlow, so the user's open web UI session
    ends: the next click in the browser asks for the password again.
"""

    # Modules that can authenticate with an API key instead of logging in.
    API_KEY = r"""
options:
  api_key:
    description:
      - >-
        An API key of the user's tenant (C(ragflow-...), from M(llmops.ragstack.ragflow_token)), sent as
        C(Authorization: Bearer) instead of logging in.
      - Prefer it once a key exists. RAGFlow (v0.24 and v0.27) accepts a key wherever it accepts a login
        session, and every login replaces the user's session, which signs the user out of the web UI
        (and out of another task that logged in as the same user a moment before).
    type: str
"""
