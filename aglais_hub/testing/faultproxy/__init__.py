"""A fault-injecting reverse proxy in front of the real kube-apiserver (ours).

The testing cluster's control plane is the real one, so faults go in front of it: the
proxy (``server``) forwards each request to the API server with the client's
``Authorization`` header unchanged, so authentication and RBAC stay the real API
server's for the client's real identity, and answers chosen requests itself with a
Kubernetes ``Status`` (500, 429 with Retry-After, 503, 409…) or holds them back first
(latency), by verb, resource and namespace (``rules``). It is for token clients (the
hub's ServiceAccount kubeconfig, ``hubaccount``): a client certificate ends at the
proxy's TLS and cannot be passed on. Watches and other long responses stream through;
upgrades (exec, attach, port-forward) do not.

Run it with ``python -m aglais_hub.testing.faultproxy`` (DevCluster does, see
``DevCluster.faults`` and ``through_faults``); ``FaultProxy`` is the tests' client of
its control API.
"""

from .client import FaultProxy, FaultProxyError
from .rules import VERBS, RequestInfo, Rule, RuleError, classify

__all__ = ["VERBS", "FaultProxy", "FaultProxyError", "RequestInfo", "Rule", "RuleError", "classify"]
