"""A driver process for the autoscaling end-to-end tests (run by `tests.droplets.cluster.RayDriver`).

    python -m tests.droplets.ray_driver <gcs address> <serve http port>

Connects to the test's Ray cluster, then answers one JSON request per stdin line with one
JSON reply line on stdout (prefixed, since Ray may print there too):

- ``ping``: connected.
- ``deploy`` {settings}: Serve on the head only (the HTTP proxy on 127.0.0.1:<port>), then the
  voiceq app from `serve_app.builder.compose(Settings(...))`, as `serve run` would.
- ``status``: what the tests assert on: the inference deployment in `serve.status()`, its
  replica actors and the Ray node each one lives on, and the autoscaler's nodes with the cloud
  instance (droplet) id each one was matched to.

The app keeps running after this process exits (Serve's controller is detached).
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, Callable

import ray
from ray import serve

PREFIX = "@@voiceq-driver@@ "
APP = "voiceq"
INFERENCE = "VoiceCloneInference"


def deploy(request: dict[str, Any], http_port: int) -> dict[str, Any]:
    from serve_app.builder import compose
    from voiceq.settings import Settings

    # Settings from the given values only (strings parsed as the environment's would be),
    # not from whatever VOICEQ_* this process happens to inherit.
    settings = Settings.from_env({}, **request["settings"])
    # One proxy, on the head: a worker "droplet" shares this machine's address, so a proxy
    # there could not bind the same port, and a GPU node should not carry ingress anyway.
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": http_port})
    serve.run(compose(settings), name=APP, route_prefix="/", blocking=False)
    return {"ok": True}


def status(request: dict[str, Any], address: str) -> dict[str, Any]:
    from ray._private.state import state
    from ray.autoscaler.v2.sdk import get_cluster_status

    app = serve.status().applications.get(APP)
    deployment = app.deployments.get(INFERENCE) if app else None
    replicas = [
        {"name": actor["Name"], "state": actor["State"], "node_id": actor["Address"]["NodeID"] or None,
         "pid": actor["Pid"]}
        for actor in state.actor_table(None).values()
        if f"#{INFERENCE}#" in (actor.get("Name") or "") and actor["State"] != "DEAD"
    ]
    cluster = get_cluster_status(address)
    nodes = [
        {"instance_id": node.instance_id, "node_id": node.node_id, "type": node.ray_node_type_name,
         "status": node.node_status, "used": node.used_resources(), "total": node.total_resources()}
        for node in [*cluster.active_nodes, *cluster.idle_nodes]
    ]
    return {
        "app": str(app.status) if app else None,
        "deployment": None if deployment is None else {
            "status": str(deployment.status),
            "replica_states": {str(k): v for k, v in deployment.replica_states.items()},
            "message": deployment.message,
        },
        "replicas": replicas,
        "nodes": nodes,
        "pending_launches": len(cluster.pending_launches),
        "pending_nodes": len(cluster.pending_nodes),
    }


def main() -> None:
    address, http_port = sys.argv[1], int(sys.argv[2])
    ray.init(address=address, log_to_driver=False)
    commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "ping": lambda request: {"ok": True},
        "deploy": lambda request: deploy(request, http_port),
        "status": lambda request: status(request, address),
    }
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            reply = commands[request["command"]](request)
        except Exception:  # reported to the test, which fails with it
            reply = {"error": traceback.format_exc()}
        print(PREFIX + json.dumps(reply, default=str), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
