"""The node agent: OURS, standing in for a kubelet on the testing cluster's real
control plane (aglais_hub.testing.controlplane).

One agent is one Node. It talks to the real kube-apiserver through a client of its own
(``client``: aiohttp, a ``system:node:<name>`` client certificate, so the Node
authorizer and NodeRestriction admission limit it to its own Node, Lease and pods, as
they limit a kubelet), registers the Node (capacity, allocatable, conditions,
addresses, nodeInfo) and renews its Lease in ``kube-node-lease`` every 10 s, so the real
kube-scheduler binds pods to it. For each pod bound to it, it runs the containers whose
images its image registry maps (``images``: which image runs as which local command;
test images that cannot be pulled or crash) as local processes, at the pod's own
loopback address; materialises volumes as directories (configMap, secret, downwardAPI,
emptyDir, a claim's PersistentVolume directory, and the projected service-account
token from TokenRequest, so an in-pod client authenticates as the pod's ServiceAccount);
resolves env (downward API, configMapKeyRef, secretKeyRef, envFrom); runs readiness
probes; writes pods/status; records the Events a kubelet records; and on deletion sends
SIGTERM, waits the grace period, SIGKILLs and deletes with grace 0.

What it is not: there is no container isolation (no namespaces, cgroups, users, limits,
read-only mounts), no network model beyond distinct loopback addresses (NetworkPolicy is
not enforced; Services route through the testing cluster's service proxy and names
resolve through its DNS stand-in, aglais_hub.testing.clusterdns, which every process it
starts loads; in-pod clients reach the API server at KUBERNETES_SERVICE_HOST/PORT, its
own loopback address), of the kubelet API only container logs and exec (``kubeletapi``:
``kubectl logs``, ``exec`` and ``cp`` work, ``attach`` and ``port-forward`` do not; logs
are also files in the pod's directory), no image pulls (but test images that fail to
pull, see ``images``), no liveness/startup probes, no lifecycle hooks, no eviction or
node pressure, no static pods, no CSI or device plugins.

``python -m aglais_hub.testing.nodeagent --kubeconfig K --name N --root DIR`` runs one;
aglais_hub.testing.devcluster starts them with the control plane.
"""
