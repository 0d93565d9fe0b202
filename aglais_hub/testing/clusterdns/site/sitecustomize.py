"""Cluster DNS for Python processes a node agent starts (ours: the testing cluster has
no DNS server). The node agent puts this directory (holding nothing else, so no other module name
is shadowed) first on PYTHONPATH, so Python runs
this at start-up: socket.getaddrinfo/gethostbyname look Service names up in
``$AGLAIS_CLUSTER_DNS_FILE`` (as in a pod of ``$AGLAIS_POD_NAMESPACE``) before the normal
resolver. asyncio, tornado, httpx, requests and aiohttp's default resolver all end up in
socket.getaddrinfo. With ``$AGLAIS_POD_IP`` a bind to all IPv4 addresses binds the pod
IP (pods have no network namespace of their own here). Another sitecustomize further on
sys.path is imported afterwards, so this one shadows none."""

import importlib.machinery
import importlib.util
import os
import sys


def _load(name: str, path: str):  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _ThreadedAiohttp:
    """With aiodns installed aiohttp resolves through c-ares, not getaddrinfo: once
    aiohttp.resolver has run (before aiohttp.connector binds its name), its default is
    made the getaddrinfo-based ThreadedResolver."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
        if name != "aiohttp.resolver":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):  # noqa: ANN001, ANN202
            run(module)
            module.DefaultResolver = module.ThreadedResolver

        spec.loader.exec_module = exec_module
        return spec


def _install() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(here)
    path = os.environ.get("AGLAIS_CLUSTER_DNS_FILE")
    pod_ip = os.environ.get("AGLAIS_POD_IP")
    if path or pod_ip:
        patch = _load("_aglais_clusterdns_patch", os.path.join(package, "_patch.py"))
    if path:
        resolver = _load("_aglais_clusterdns_resolver", os.path.join(package, "resolver.py"))
        dns_file = resolver.DnsFile(path)
        namespace = os.environ.get("AGLAIS_POD_NAMESPACE") or None
        patch.install(lambda host: dns_file.lookup(host, namespace))
        sys.meta_path.insert(0, _ThreadedAiohttp())
    if pod_ip:  # binds to all addresses bind the pod's own
        patch.install_pod_address(pod_ip)
    # the next sitecustomize on the path (a distribution's or a virtualenv's)
    others = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    mine = os.path.abspath(__file__)
    if spec is not None and spec.origin and os.path.abspath(spec.origin) != mine:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


try:
    _install()
except Exception as error:  # noqa: BLE001 - never keep a process from starting
    print(f"aglais cluster DNS not installed: {error!r}", file=sys.stderr)
