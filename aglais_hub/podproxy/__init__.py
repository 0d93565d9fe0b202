"""The in-pod auth proxy: the only door into a notebook pod.

It listens on the notebook port, lets in only requests that JupyterHub's OAuth
grants access to this server (the owner, and admins with ``access:servers``),
and forwards them (HTTP and WebSocket) to Zeppelin on 127.0.0.1. While Zeppelin's
JVM boots it answers with a "starting" page instead of failing the hub's check.
It reports real activity (the last forwarded request or frame) to the hub, and
the volume's disk usage at ``<prefix>_aglais/usage``. In a cluster it asks the API
server whether the pod's service account may manage Spark's executor pods, and if not
says so in its notice bar and health (`sparkrights`).

Zeppelin runs anonymous, so the proxy's login cookie is all that stands between a web
page the user visits and code run as that user: the proxy refuses cross-site unsafe
requests and WebSockets from other origins (`crosssite`), and its cookies are
``SameSite=Lax`` (``Secure`` over HTTPS).
"""
