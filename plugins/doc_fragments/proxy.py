# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The use_proxy option, shared by every module that makes HTTP requests (Ansible merges doc fragments
into DOCUMENTATION only: each module documents proxy_variables_ignored in its RETURN)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  use_proxy:
    description:
      - Whether to honour the proxy variables C(http_proxy), C(https_proxy), C(ALL_PROXY) and C(NO_PROXY)
        (either case) of the module's environment.
      - The default V(false) reaches the service directly. These are private endpoints (a mirror, Xinference,
        RAGFlow) on the local network or loopback, and a proxy left in an operator's environment either
        cannot reach them or breaks TLS to them. The variables the module ignored are returned in
        RV(proxy_variables_ignored).
      - With V(true), a request that fails through a proxy fails with a message naming the proxy and the
        variable it came from.
    type: bool
    default: false
"""
