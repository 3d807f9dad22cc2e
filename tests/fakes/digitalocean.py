"""A local stand-in for the DigitalOcean API (test-only).

A real HTTP server on 127.0.0.1 speaking DigitalOcean's JSON for the endpoints the provider
uses, so pydo, azure-core and our client run unmodified against it:

- ``POST /v2/droplets`` (``name`` or up to 10 ``names``) -> 202 ``{"droplet"|"droplets", "links"}``
- ``GET /v2/droplets`` with ``page``/``per_page``/``tag_name``/``name``/``type`` -> 200 with
  ``links.pages`` and ``meta.total``. GPU droplets are listed only with ``type=gpus``, which
  cannot be combined with ``tag_name`` (422).
- ``GET /v2/droplets/{id}`` -> 200 / 404; ``DELETE /v2/droplets/{id}`` -> 204 / 404;
  ``DELETE /v2/droplets?tag_name=`` -> 204
- ``POST /v2/tags`` -> 201; ``POST|DELETE /v2/tags/{tag}/resources`` -> 204 / 404
- ``GET|POST /v2/firewalls`` (list with ``links.pages``/``meta.total``; create -> 202
  ``{"firewall"}``), ``GET|PUT|DELETE /v2/firewalls/{id}`` -> 200 / 204 / 404; rules are checked
  as DigitalOcean does (protocol tcp/udp/icmp, ``ports`` a port, a range or "0"/"all" for tcp and
  udp, every rule with at least one source or destination, addresses as IPs or CIDR ranges, tags
  that exist, a name of letters, digits, '.' and '-')
- ``GET /v2/vpcs`` and ``GET /v2/vpcs/{id}`` (a default VPC per region, and any `add_vpc`)
- errors as ``{"id": "not_found", "message": ...}``; 401 without the bearer token; 422 on bad
  input; every reply carries ``ratelimit-limit|remaining|reset`` over a sliding window.

Droplets start ``new`` and become ``active`` (with private and public IPs) after
``active_after_s``; `on_boot` is then called in its own thread with the droplet's JSON and its
user data, so a test can make a booting droplet start a local Ray worker.

Faults: `fail_next` (the next N requests to an endpoint get 429 with or without
``retry-after``, 5xx, 422..., optionally after the change was made), `delay_reply` (the change
is made, the reply comes too late: a create that times out client-side but succeeds),
`never_activate` (a droplet stuck in ``new``), and `add_foreign_droplet` (droplets of other
clusters or people, which must never be touched: `touched_ids` records every droplet id named
by a mutating request).
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import uuid
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

TOKEN = "fake-do-token-0123456789abcdef"
MAX_USER_DATA = 64 * 1024
_TAG = re.compile(r"^[A-Za-z0-9:_-]{1,255}$")
_NAME = re.compile(r"^[A-Za-z0-9.-]{1,255}$")
_FIREWALL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$")
_PORTS = re.compile(r"^(0|all|\d{1,5}|\d{1,5}-\d{1,5})$")
_TARGET_KEYS = ("addresses", "droplet_ids", "load_balancer_uids", "kubernetes_ids", "tags")
DEFAULT_VPC = "5a4981aa-9653-4bd1-bef5-d6bff52042e4"

# Size catalogue: slug -> (vcpus, memory MiB, disk GB, $/hour, gpu model or None).
SIZES: dict[str, tuple[int, int, int, float, str | None]] = {
    "s-1vcpu-1gb": (1, 1024, 25, 0.00893, None),
    "s-2vcpu-4gb": (2, 4096, 80, 0.03571, None),
    "s-4vcpu-8gb": (4, 8192, 160, 0.07143, None),
    "c-8": (8, 16384, 100, 0.25, None),
    "gpu-mi300x1-192gb": (20, 245760, 720, 1.99, "amd_mi300x"),
    "gpu-h100x1-80gb": (20, 245760, 720, 3.39, "nvidia_h100"),
    "gpu-l40sx1-48gb": (8, 65536, 500, 1.57, "nvidia_l40s"),
    "gpu-4000adax1-20gb": (8, 32768, 500, 0.76, "nvidia_rtx_4000_ada"),
}


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    at: float
    droplet_ids: tuple[int, ...] = ()
    firewall_ids: tuple[str, ...] = ()

    @property
    def endpoint(self) -> str:
        return endpoint_key(self.method, self.path)

    @property
    def mutating(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class _Fault:
    status: int
    remaining: int
    skip: int = 0
    retry_after: str | None = None
    body: dict[str, Any] | None = None
    commit: bool = False


@dataclass
class _Delay:
    seconds: float
    remaining: int


@dataclass
class _Droplet:
    data: dict[str, Any]
    user_data: str | None
    created_mono: float
    booted: bool = False
    stuck: bool = False
    destroyed: bool = False
    foreign: bool = False


def endpoint_key(method: str, path: str) -> str:
    """``GET /v2/droplets/{id}``-style key for a request (ids and tag names abstracted)."""
    path = re.sub(r"^/v2/droplets/\d+", "/v2/droplets/{id}", path)
    path = re.sub(r"^/v2/tags/[^/]+", "/v2/tags/{tag}", path)
    path = re.sub(r"^/v2/firewalls/[^/]+", "/v2/firewalls/{id}", path)
    path = re.sub(r"^/v2/vpcs/[^/]+", "/v2/vpcs/{id}", path)
    return f"{method} {path}"


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeDigitalOcean:
    def __init__(
        self,
        *,
        token: str = TOKEN,
        active_after_s: float = 0.2,
        max_per_page: int = 200,
        rate_limit: int = 5000,
        rate_window_s: float = 3600.0,
        first_droplet_id: int = 400000001,
    ) -> None:
        self.token = token
        self.active_after_s = active_after_s
        self.max_per_page = max_per_page
        self.rate_limit = rate_limit
        self.rate_window_s = rate_window_s
        self.on_boot: Callable[[dict[str, Any], str | None], None] | None = None
        self.on_destroy: Callable[[dict[str, Any]], None] | None = None
        self._lock = threading.RLock()
        self._droplets: dict[int, _Droplet] = {}
        self._tags: set[str] = set()
        self._next_id = first_droplet_id
        self._next_action = 900000001
        self._requests: list[Recorded] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, list[_Delay]] = {}
        self._stuck_names: list[str] = []
        self._window: list[float] = []
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._firewalls: dict[str, dict[str, Any]] = {}
        self._foreign_firewalls: set[str] = set()
        self._vpcs: dict[str, dict[str, Any]] = {}
        self.add_vpc(DEFAULT_VPC, "atl1", "10.116.0.0/20", default=True)

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeDigitalOcean:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        serve = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-do",
            daemon=True,
        )
        ticker = threading.Thread(target=self._tick, name="fake-do-boot", daemon=True)
        self._threads = [serve, ticker]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeDigitalOcean:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---- fault injection ---------------------------------------------------------------

    def fail_next(
        self,
        endpoint: str,
        status: int,
        *,
        count: int = 1,
        skip: int = 0,
        retry_after: str | None = None,
        body: dict[str, Any] | None = None,
        commit: bool = False,
    ) -> None:
        """The next `count` requests to `endpoint` (after `skip` good ones) get `status`.

        With `commit` the request is carried out first and then answered with the error
        (a 5xx on a create that in fact created the droplets).
        """
        with self._lock:
            self._faults.setdefault(endpoint, []).append(
                _Fault(status, count, skip, retry_after, body, commit)
            )

    def delay_reply(self, endpoint: str, seconds: float, *, count: int = 1) -> None:
        """Carry out the next `count` requests to `endpoint`, then reply after `seconds`."""
        with self._lock:
            self._delays.setdefault(endpoint, []).append(_Delay(seconds, count))

    def never_activate(self, name_prefix: str = "") -> None:
        """Droplets whose name starts with `name_prefix` stay ``new`` forever."""
        with self._lock:
            self._stuck_names.append(name_prefix)

    def add_foreign_droplet(
        self, name: str, *, size: str = "s-2vcpu-4gb", tags: tuple[str, ...] = ()
    ) -> int:
        """A droplet that is not ours (already active); the provider must never touch it."""
        return self.add_droplet(name, size=size, tags=tags, foreign=True)

    def add_droplet(
        self,
        name: str,
        *,
        size: str = "s-2vcpu-4gb",
        tags: tuple[str, ...] = (),
        foreign: bool = False,
        active: bool = True,
    ) -> int:
        """A droplet that appears without a create request through the API (one made by
        someone else, or one whose create request materialises late)."""
        with self._lock:
            body = {"size": size, "region": "atl1", "image": "ubuntu-24-04-x64",
                    "tags": list(tags)}
            droplet = self._make(name, body, None)
            droplet.foreign = foreign
            if active:
                self._activate(droplet)
                droplet.booted = True
            return int(droplet.data["id"])

    def add_vpc(self, vpc_uuid: str, region: str, ip_range: str, *, default: bool = False) -> None:
        with self._lock:
            self._vpcs[vpc_uuid] = {
                "id": vpc_uuid, "urn": f"do:vpc:{vpc_uuid}", "name": f"default-{region}" if default else vpc_uuid[:8],
                "description": "", "region": region, "ip_range": ip_range, "default": default,
                "created_at": _now_iso(),
            }

    def add_foreign_firewall(self, name: str, *, tags: tuple[str, ...] = (), inbound_port: str = "443") -> str:
        """A firewall that is not ours (someone else's, maybe on our tag); never to be touched."""
        with self._lock:
            self._tags.update(tags)
            firewall = self._new_firewall({
                "name": name, "tags": list(tags), "droplet_ids": [],
                "inbound_rules": [{"protocol": "tcp", "ports": inbound_port,
                                   "sources": {"addresses": ["0.0.0.0/0", "::/0"]}}],
                "outbound_rules": [],
            })
            self._foreign_firewalls.add(firewall["id"])
            return str(firewall["id"])

    def firewalls(self, tag: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(json.dumps(f)) for f in self._firewalls.values()
                    if tag is None or tag in f["tags"]]

    @property
    def foreign_firewall_ids(self) -> set[str]:
        with self._lock:
            return set(self._foreign_firewalls)

    def touched_firewall_ids(self) -> set[str]:
        """Every firewall id named by a mutating request."""
        return {i for r in self.mutations() for i in r.firewall_ids}

    # ---- inspection ----------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, endpoint: str) -> list[Recorded]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def mutations(self) -> list[Recorded]:
        return [r for r in self.requests if r.mutating]

    def touched_ids(self) -> set[int]:
        """Every droplet id named by a mutating request."""
        return {i for r in self.mutations() for i in r.droplet_ids}

    @property
    def foreign_ids(self) -> set[int]:
        with self._lock:
            return {i for i, d in self._droplets.items() if d.foreign}

    def droplet(self, droplet_id: int) -> dict[str, Any] | None:
        with self._lock:
            droplet = self._droplets.get(droplet_id)
            return None if droplet is None or droplet.destroyed else json.loads(
                json.dumps(droplet.data)
            )

    def user_data(self, droplet_id: int) -> str | None:
        with self._lock:
            return self._droplets[droplet_id].user_data

    def live_droplets(self, tag: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                json.loads(json.dumps(d.data))
                for d in self._droplets.values()
                if not d.destroyed and (tag is None or tag in d.data["tags"])
            ]

    def destroyed_ids(self) -> set[int]:
        with self._lock:
            return {i for i, d in self._droplets.items() if d.destroyed}

    def created_ids(self) -> set[int]:
        with self._lock:
            return {i for i, d in self._droplets.items() if not d.foreign}

    # ---- state changes -------------------------------------------------------------

    def _make(self, name: str, body: dict[str, Any], user_data: str | None) -> _Droplet:
        vcpus, memory, disk, price, gpu = SIZES[body["size"]]
        droplet_id = self._next_id
        self._next_id += 1
        image = body["image"]
        data: dict[str, Any] = {
            "id": droplet_id,
            "name": name,
            "memory": memory,
            "vcpus": vcpus,
            "disk": disk,
            "locked": False,
            "status": "new",
            "kernel": None,
            "created_at": _now_iso(),
            "features": ["monitoring"] if body.get("monitoring") else [],
            "backup_ids": [],
            "next_backup_window": None,
            "snapshot_ids": [],
            "image": {
                "id": 7000 + len(str(image)),
                "name": str(image),
                "distribution": "Ubuntu",
                "slug": image if isinstance(image, str) else None,
                "public": True,
                "regions": [body["region"]],
                "type": "base",
            },
            "volume_ids": [],
            "size": {
                "slug": body["size"],
                "memory": memory,
                "vcpus": vcpus,
                "disk": disk,
                "transfer": 5.0,
                "price_monthly": round(price * 672, 2),
                "price_hourly": price,
                "regions": [body["region"]],
                "available": True,
                "description": "GPU" if gpu else "Basic",
            },
            "size_slug": body["size"],
            "networks": {"v4": [], "v6": []},
            "region": {
                "name": body["region"].upper(),
                "slug": body["region"],
                "features": ["metadata", "install_agent"],
                "available": True,
                "sizes": [body["size"]],
            },
            "tags": list(dict.fromkeys(body.get("tags") or [])),
            "vpc_uuid": body.get("vpc_uuid") or "5a4981aa-9653-4bd1-bef5-d6bff52042e4",
        }
        if gpu:
            data["gpu_info"] = {"count": 1, "model": gpu, "vram": {"amount": 0, "unit": "gib"}}
        droplet = _Droplet(data=data, user_data=user_data, created_mono=time.monotonic())
        droplet.stuck = any(name.startswith(prefix) for prefix in self._stuck_names)
        self._tags.update(data["tags"])
        self._droplets[droplet_id] = droplet
        return droplet

    def _activate(self, droplet: _Droplet) -> None:
        n = int(droplet.data["id"]) % 250 + 2
        droplet.data["status"] = "active"
        droplet.data["networks"]["v4"] = [
            {"ip_address": f"10.116.0.{n}", "netmask": "255.255.240.0", "gateway": "10.116.0.1",
             "type": "private"},
            {"ip_address": f"203.0.113.{n}", "netmask": "255.255.255.0",
             "gateway": "203.0.113.1", "type": "public"},
        ]

    def _tick(self) -> None:
        while not self._stop.wait(0.05):
            booted: list[tuple[dict[str, Any], str | None]] = []
            with self._lock:
                now = time.monotonic()
                for droplet in self._droplets.values():
                    if (
                        droplet.destroyed
                        or droplet.stuck
                        or droplet.data["status"] != "new"
                        or now - droplet.created_mono < self.active_after_s
                    ):
                        continue
                    self._activate(droplet)
                    if not droplet.booted:
                        droplet.booted = True
                        booted.append((json.loads(json.dumps(droplet.data)), droplet.user_data))
            hook = self.on_boot
            for data, user_data in booted:
                if hook is not None:
                    threading.Thread(
                        target=hook, args=(data, user_data), name="fake-do-on-boot", daemon=True
                    ).start()

    def _destroy(self, droplet: _Droplet) -> None:
        droplet.destroyed = True
        hook = self.on_destroy
        if hook is not None:
            threading.Thread(
                target=hook, args=(json.loads(json.dumps(droplet.data)),), daemon=True
            ).start()

    # ---- request handling (called by the handler) ----------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        now = time.time()
        self._window = [t for t in self._window if now - t < self.rate_window_s]
        self._window.append(now)
        reset = (self._window[0] + self.rate_window_s) if self._window else now
        return {
            "ratelimit-limit": str(self.rate_limit),
            "ratelimit-remaining": str(max(0, self.rate_limit - len(self._window))),
            "ratelimit-reset": str(int(reset + 0.999)),
        }

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], Any, float]:
        """Returns (status, headers, JSON body or None, seconds to wait before replying)."""
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = raw_body.decode("utf-8", "replace")
        key = endpoint_key(method, path)
        with self._lock:
            reply_headers = self._rate_headers()
            record = Recorded(method, path, query, body, 0, time.monotonic())
            self._requests.append(record)
            if headers.get("authorization") != f"Bearer {self.token}":
                status, payload = 401, _error("unauthorized", "Unable to authenticate you")
            elif self._over_limit():
                status, payload = 429, _error("too_many_requests", "API Rate limit exceeded.")
            else:
                fault = self._take_fault(key)
                if fault is not None and not fault.commit:
                    status, payload = fault.status, fault.body or _default_error(fault.status)
                    if fault.retry_after is not None:
                        reply_headers["retry-after"] = fault.retry_after
                else:
                    status, payload = self._route(method, path, query, body, record)
                    if fault is not None:
                        status, payload = fault.status, fault.body or _default_error(fault.status)
                        if fault.retry_after is not None:
                            reply_headers["retry-after"] = fault.retry_after
            record.status = status
            delay = self._take_delay(key)
        return status, reply_headers, payload, delay

    def _over_limit(self) -> bool:
        return len(self._window) > self.rate_limit

    def _take_fault(self, key: str) -> _Fault | None:
        for fault in self._faults.get(key, []):
            if fault.remaining <= 0:
                continue
            if fault.skip > 0:
                fault.skip -= 1
                return None
            fault.remaining -= 1
            return fault
        return None

    def _take_delay(self, key: str) -> float:
        for delay in self._delays.get(key, []):
            if delay.remaining > 0:
                delay.remaining -= 1
                return delay.seconds
        return 0.0

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any, record: Recorded
    ) -> tuple[int, Any]:
        if path == "/v2/droplets":
            if method == "GET":
                return self._list(query)
            if method == "POST":
                return self._create(body, record)
            if method == "DELETE" and "tag_name" in query:
                for droplet in self._droplets.values():
                    if not droplet.destroyed and query["tag_name"] in droplet.data["tags"]:
                        record.droplet_ids += (int(droplet.data["id"]),)
                        self._destroy(droplet)
                return 204, None
        match = re.fullmatch(r"/v2/droplets/(\d+)", path)
        if match:
            droplet_id = int(match.group(1))
            droplet = self._droplets.get(droplet_id)
            if method == "DELETE":
                record.droplet_ids = (droplet_id,)
            if droplet is None or droplet.destroyed:
                return 404, _default_error(404)
            if method == "GET":
                return 200, {"droplet": droplet.data}
            if method == "DELETE":
                self._destroy(droplet)
                return 204, None
        if path == "/v2/tags" and method == "POST":
            name = (body or {}).get("name", "")
            if not _TAG.match(name):
                return 400, _error("bad_request", "tag name must be letters, digits, ':', '-', '_'")
            self._tags.add(name)
            return 201, {"tag": {"name": name, "resources": {"count": 0}}}
        match = re.fullmatch(r"/v2/tags/([^/]+)/resources", path)
        if match and method in ("POST", "DELETE"):
            return self._tag_resources(method, unquote(match.group(1)), body, record)
        if path == "/v2/firewalls":
            if method == "GET":
                return self._page("firewalls", sorted(self._firewalls.values(), key=lambda f: f["created_at"] + f["id"]),
                                  query, "/v2/firewalls?")
            if method == "POST":
                problem = self._check_firewall(body)
                if problem:
                    return 422, _error("unprocessable_entity", problem)
                firewall = self._new_firewall(body)
                record.firewall_ids = (firewall["id"],)
                return 202, {"firewall": firewall}
        match = re.fullmatch(r"/v2/firewalls/([^/]+)", path)
        if match:
            firewall_id = unquote(match.group(1))
            if method in ("PUT", "DELETE"):
                record.firewall_ids = (firewall_id,)
            firewall = self._firewalls.get(firewall_id)
            if firewall is None:
                return 404, _default_error(404)
            if method == "GET":
                return 200, {"firewall": firewall}
            if method == "DELETE":
                del self._firewalls[firewall_id]
                return 204, None
            if method == "PUT":
                problem = self._check_firewall(body)
                if problem:
                    return 422, _error("unprocessable_entity", problem)
                firewall.update({k: json.loads(json.dumps(body.get(k) or [])) for k in
                                 ("inbound_rules", "outbound_rules", "tags", "droplet_ids")})
                firewall["name"] = body["name"]
                return 200, {"firewall": firewall}
        if path == "/v2/vpcs" and method == "GET":
            return self._page("vpcs", list(self._vpcs.values()), query, "/v2/vpcs?")
        match = re.fullmatch(r"/v2/vpcs/([^/]+)", path)
        if match and method == "GET":
            vpc = self._vpcs.get(unquote(match.group(1)))
            return (200, {"vpc": vpc}) if vpc else (404, _default_error(404))
        return 404, _error("not_found", "The resource you were accessing could not be found.")

    def _page(self, key: str, items: list[dict[str, Any]], query: dict[str, str], base_path: str) -> tuple[int, Any]:
        try:
            page = int(query.get("page", "1"))
            per_page = min(int(query.get("per_page", "20")), self.max_per_page)
        except ValueError:
            return 400, _error("bad_request", "page and per_page must be integers")
        if page < 1 or per_page < 1:
            return 400, _error("bad_request", "page and per_page must be positive")
        last = max(1, -(-len(items) // per_page))
        pages: dict[str, str] = {}
        base = self.endpoint + base_path
        if page < last:
            pages["next"] = base + urlencode({**query, "page": page + 1, "per_page": per_page})
            pages["last"] = base + urlencode({**query, "page": last, "per_page": per_page})
        chunk = items[(page - 1) * per_page : page * per_page]
        return 200, {key: chunk, "links": {"pages": pages}, "meta": {"total": len(items)}}

    def _new_firewall(self, body: dict[str, Any]) -> dict[str, Any]:
        firewall = {
            "id": str(uuid.uuid4()), "name": body["name"], "status": "succeeded", "created_at": _now_iso(),
            "pending_changes": [], "inbound_rules": json.loads(json.dumps(body.get("inbound_rules") or [])),
            "outbound_rules": json.loads(json.dumps(body.get("outbound_rules") or [])),
            "droplet_ids": list(body.get("droplet_ids") or []), "tags": list(body.get("tags") or []),
        }
        for rule in firewall["inbound_rules"] + firewall["outbound_rules"]:
            if rule.get("protocol") == "icmp":
                rule["ports"] = "0"  # DigitalOcean answers "0" for ICMP
            elif rule.get("ports") == "all":
                rule["ports"] = "0"
        self._firewalls[firewall["id"]] = firewall
        return firewall

    def _check_firewall(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        if not isinstance(body.get("name"), str) or not _FIREWALL_NAME.match(body["name"]):
            return f"name {body.get('name')!r}: letters, digits, '.' and '-', starting with a letter or digit"
        for tag in body.get("tags") or []:
            if tag not in self._tags:
                return f"tag {tag!r} does not exist"
        for droplet_id in body.get("droplet_ids") or []:
            droplet = self._droplets.get(droplet_id)
            if droplet is None or droplet.destroyed:
                return f"droplet {droplet_id} does not exist"
        if not (body.get("inbound_rules") or body.get("outbound_rules")):
            return "a firewall needs at least one rule"
        for kind, where in (("inbound_rules", "sources"), ("outbound_rules", "destinations")):
            for rule in body.get(kind) or []:
                protocol = rule.get("protocol")
                if protocol not in ("tcp", "udp", "icmp"):
                    return f"{kind}: protocol must be tcp, udp or icmp, not {protocol!r}"
                if protocol != "icmp":
                    ports = str(rule.get("ports", ""))
                    if not _PORTS.match(ports):
                        return f"{kind}: ports {ports!r} must be a port, a range or 0 (all)"
                    bounds = [int(p) for p in ports.split("-") if p.isdigit()]
                    if any(p > 65535 for p in bounds):
                        return f"{kind}: ports {ports!r} out of range"
                target = rule.get(where) or {}
                unknown = set(target) - set(_TARGET_KEYS)
                if unknown or not any(target.get(k) for k in _TARGET_KEYS):
                    return f"{kind}: each rule needs {where} ({', '.join(_TARGET_KEYS)})"
                for address in target.get("addresses") or []:
                    try:
                        ipaddress.ip_network(address, strict=False)
                    except ValueError:
                        return f"{kind}: {address!r} is not an address or CIDR range"
                for tag in target.get("tags") or []:
                    if tag not in self._tags:
                        return f"{kind}: tag {tag!r} does not exist"
        return None

    def _list(self, query: dict[str, str]) -> tuple[int, Any]:
        kind = query.get("type")
        if kind == "gpus" and "tag_name" in query:
            return 422, _error("unprocessable_entity", "type=gpus cannot be combined with tag_name")
        try:
            page = int(query.get("page", "1"))
            per_page = min(int(query.get("per_page", "20")), self.max_per_page)
        except ValueError:
            return 400, _error("bad_request", "page and per_page must be integers")
        if page < 1 or per_page < 1:
            return 400, _error("bad_request", "page and per_page must be positive")
        matching = []
        for droplet in sorted(self._droplets.values(), key=lambda d: d.data["id"]):
            data = droplet.data
            is_gpu = str(data["size_slug"]).startswith("gpu-")
            if droplet.destroyed or is_gpu != (kind == "gpus"):
                continue
            if "tag_name" in query and query["tag_name"] not in data["tags"]:
                continue
            if "name" in query and query["name"] != data["name"]:
                continue
            matching.append(data)
        total = len(matching)
        last = max(1, -(-total // per_page))
        items = matching[(page - 1) * per_page : page * per_page]
        base = self.endpoint + "/v2/droplets?"

        def link(number: int) -> str:
            return base + urlencode({**query, "page": number, "per_page": per_page})

        pages: dict[str, str] = {}
        if page > 1:
            pages["first"] = link(1)
            pages["prev"] = link(page - 1)
        if page < last:
            pages["next"] = link(page + 1)
            pages["last"] = link(last)
        return 200, {"droplets": items, "links": {"pages": pages}, "meta": {"total": total}}

    def _create(self, body: Any, record: Recorded) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, _error("bad_request", "the body must be a JSON object")
        names = body.get("names")
        single = names is None
        if single:
            names = [body.get("name")] if body.get("name") else []
        if not names:
            return 422, _error("unprocessable_entity", "name is required")
        if len(names) > 10:
            return 422, _error("unprocessable_entity", "you can create up to 10 droplets at once")
        for name in names:
            if not isinstance(name, str) or not _NAME.match(name):
                return 422, _error("unprocessable_entity", f"{name!r} is not a valid hostname")
        for required in ("region", "size", "image"):
            if not body.get(required):
                return 422, _error("unprocessable_entity", f"{required} is required")
        if body["size"] not in SIZES:
            return 422, _error(
                "unprocessable_entity", "You specified an invalid size for Droplet creation."
            )
        for tag in body.get("tags") or []:
            if not isinstance(tag, str) or not _TAG.match(tag):
                return 422, _error("unprocessable_entity", f"invalid tag {tag!r}")
        user_data = body.get("user_data")
        if user_data is not None and len(user_data.encode("utf-8")) > MAX_USER_DATA:
            return 422, _error("unprocessable_entity", "user_data exceeds 64 KiB")
        made = [self._make(name, body, user_data) for name in names]
        record.droplet_ids = tuple(int(d.data["id"]) for d in made)
        actions = []
        for _ in made:
            actions.append(
                {"id": self._next_action, "rel": "create",
                 "href": f"{self.endpoint}/v2/actions/{self._next_action}"}
            )
            self._next_action += 1
        if single:
            return 202, {"droplet": made[0].data, "links": {"actions": actions}}
        return 202, {"droplets": [d.data for d in made], "links": {"actions": actions}}

    def _tag_resources(
        self, method: str, tag: str, body: Any, record: Recorded
    ) -> tuple[int, Any]:
        resources = (body or {}).get("resources") or []
        ids = []
        for resource in resources:
            try:
                ids.append(int(resource["resource_id"]))
            except (KeyError, TypeError, ValueError):
                return 400, _error("bad_request", "resources need a resource_id")
        record.droplet_ids = tuple(ids)
        if tag not in self._tags:
            return 404, _error("not_found", f"tag {tag} not found")
        for droplet_id in ids:
            droplet = self._droplets.get(droplet_id)
            if droplet is None or droplet.destroyed:
                return 404, _error("not_found", f"droplet {droplet_id} not found")
        for droplet_id in ids:
            tags = self._droplets[droplet_id].data["tags"]
            if method == "POST" and tag not in tags:
                tags.append(tag)
            elif method == "DELETE" and tag in tags:
                tags.remove(tag)
        return 204, None


def _error(error_id: str, message: str) -> dict[str, str]:
    return {"id": error_id, "message": message, "request_id": "fake-request"}


def _default_error(status: int) -> dict[str, str]:
    if status == 429:
        return _error("too_many_requests", "API Rate limit exceeded.")
    if status == 422:
        return _error("unprocessable_entity", "The request could not be processed.")
    if status == 404:
        return _error("not_found", "The resource you were accessing could not be found.")
    if status >= 500:
        return _error("server_error", "Server was unable to give you a response.")
    return _error("error", f"HTTP {status}")


class _Handler(BaseHTTPRequestHandler):
    owner: FakeDigitalOcean
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reply_headers, payload, delay = self.owner.handle(
            self.command, self.path, headers, raw
        )
        if delay:
            time.sleep(delay)
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in reply_headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up waiting (the timed-out create): nothing to tell it.
            self.close_connection = True

    do_GET = _serve
    do_POST = _serve
    do_DELETE = _serve
    do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return
