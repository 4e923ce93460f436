# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of every module that logs into RAGFlow's web API as a user."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
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
"""
