"""Ray autoscaler node provider for DigitalOcean droplets (``provider: type: external``).

Node ids are droplet ids. Every droplet the provider creates carries the cluster tag
(``ray-cluster:<name>``), a launch tag for the `create_node` call that made it, and Ray's node
tags (see `droplets.tags`); the provider lists, re-tags and destroys only droplets with its
cluster tag. Worker droplets join the cluster by themselves through cloud-init
(`droplets.cloud_init`), so the cluster YAML sets ``disable_node_updaters: true``.

The autoscaler calls these methods from several threads. Shared state lives in one
`ClusterState` (its own lock); API calls run outside any lock, except that only one listing
refresh runs at a time and tag writes are serialised.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    TAG_RAY_CLUSTER_NAME,
    TAG_RAY_NODE_KIND,
    TAG_RAY_USER_NODE_TYPE,
)

from droplets.api import MAX_NAMES_PER_CREATE, CreateRequest, DigitalOceanApi
from droplets.cloud_init import WorkerBootstrap, render_user_data
from droplets.config import ConfigError, NodeSettings, ProviderSettings, ssh_fingerprint
from droplets.errors import DigitalOceanError, ForeignDropletError
from droplets.firewall import ensure_firewall, remove_firewall
from droplets.model import STATUS_ACTIVE, STATUS_ARCHIVE, STATUS_NEW, Droplet
from droplets.requirements import worker_requirements
from droplets.state import ClusterState
from droplets.tags import (
    cluster_tag,
    decode_node_tags,
    encode_node_tags,
    launch_tag,
    launch_tokens,
    tag_changes,
)

logger = logging.getLogger(__name__)

_NAME_JUNK = re.compile(r"[^a-z0-9-]+")
_MAX_NAME = 63


def droplet_names(cluster_name: str, node_type: str, token: str, count: int) -> list[str]:
    """Hostname-safe, unique droplet names: ``<cluster>-<node type>-<token>-<n>``."""
    suffix_len = len(f"-{token[:8]}-{count}")
    stem = _NAME_JUNK.sub("-", f"{cluster_name}-{node_type}".lower()).strip("-")
    stem = re.sub("-{2,}", "-", stem)[: _MAX_NAME - suffix_len].strip("-") or "ray"
    return [f"{stem}-{token[:8]}-{index}" for index in range(1, count + 1)]


def is_stuck(droplet: Droplet, now_wall: float, timeout_s: float) -> bool:
    """A droplet still "new" long after it was created will not become active."""
    return (
        droplet.status == STATUS_NEW
        and now_wall - droplet.created_at.timestamp() > timeout_s
    )


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class DigitalOceanNodeProvider(NodeProvider):
    """Ray NodeProvider that maps nodes to DigitalOcean droplets."""

    def __init__(
        self,
        provider_config: dict[str, Any],
        cluster_name: str,
        *,
        api: DigitalOceanApi | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(provider_config, cluster_name)
        self.settings = ProviderSettings.from_provider_config(provider_config)
        self._cluster_tag = cluster_tag(cluster_name)
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._api = api
        self._api_lock = threading.Lock()
        self._state = ClusterState()
        self._refresh_lock = threading.Lock()
        self._tag_lock = threading.Lock()
        self._known_tags: set[str] = set()
        # When each node's droplet was last fetched for its addresses (monotonic seconds).
        self._address_fetched_at: dict[str, float] = {}
        self._address_lock = threading.Lock()

    # ---- plumbing ----------------------------------------------------------------------

    @property
    def api(self) -> DigitalOceanApi:
        # Built on first use: `ray up` imports the provider before the token is needed.
        with self._api_lock:
            if self._api is None:
                self._api = DigitalOceanApi(
                    self.settings.read_token(),
                    endpoint=self.settings.api_endpoint,
                    retry=self.settings.retry,
                    timeout_s=self.settings.request_timeout_s,
                    create_timeout_s=self.settings.create_timeout_s,
                )
            return self._api

    @property
    def cluster_tag(self) -> str:
        return self._cluster_tag

    def droplets(self) -> list[Droplet]:
        """The cluster's droplets as last listed (refreshing if the listing is stale)."""
        self._ensure_fresh()
        return self._state.droplets()

    def _ensure_fresh(self) -> None:
        if self._state.is_fresh(self._monotonic(), self.settings.cache_ttl_s):
            return
        with self._refresh_lock:
            # Another thread may have refreshed while this one waited.
            if self._state.is_fresh(self._monotonic(), self.settings.cache_ttl_s):
                return
            self._refresh()

    def _refresh(self) -> None:
        started = self._monotonic()
        listed = self.api.list_droplets(tag=self._cluster_tag)
        listed = [d for d in listed if d.has_tag(self._cluster_tag)]
        self._state.apply_listing(
            listed, started, self._monotonic(), self.settings.terminated_grace_s
        )
        self._reap(listed)

    def _reap(self, listed: Iterable[Droplet]) -> None:
        """Destroy droplets that must not live: stuck in "new", or from a failed launch."""
        failed = self._state.failed_launches()
        now_wall = self._wall_clock()
        for droplet in listed:
            if self._state.was_terminated(droplet.node_id):
                continue
            if is_stuck(droplet, now_wall, self.settings.active_timeout_s):
                reason = (
                    f"still '{droplet.status}' {now_wall - droplet.created_at.timestamp():.0f} s "
                    f"after creation (limit {self.settings.active_timeout_s:.0f} s)"
                )
            elif launch_tokens(droplet.tags) & failed:
                reason = "it belongs to a launch that failed and was rolled back"
            else:
                continue
            logger.warning("destroying droplet %s (%s): %s", droplet.id, droplet.name, reason)
            try:
                self._destroy(droplet)
            except DigitalOceanError:
                # Still listed next time, so the next refresh tries again.
                logger.exception("could not destroy droplet %s; will retry", droplet.id)

    def _destroy(self, droplet: Droplet) -> None:
        if not droplet.has_tag(self._cluster_tag):
            raise ForeignDropletError(droplet.node_id, self.cluster_name)
        self.api.destroy_droplet(droplet.id)
        self._state.mark_terminated(droplet.node_id, self._monotonic())

    def _cluster_droplet(self, node_id: str) -> Droplet | None:
        """The droplet for `node_id` if it exists; ForeignDropletError if not ours."""
        droplet = self._state.get(node_id)
        if droplet is None:
            if self._state.was_terminated(node_id):
                return None
            droplet = self.api.get_droplet(_droplet_id(node_id))
            if droplet is None:
                return None
        if not droplet.has_tag(self._cluster_tag):
            raise ForeignDropletError(node_id, self.cluster_name)
        return droplet

    # ---- NodeProvider: queries ---------------------------------------------------------

    def non_terminated_nodes(self, tag_filters: dict[str, str]) -> list[str]:
        self._ensure_fresh()
        nodes = []
        for droplet in self._state.droplets():
            tags = decode_node_tags(droplet.tags)
            if all(tags.get(key) == value for key, value in tag_filters.items()):
                nodes.append(droplet.node_id)
        return nodes

    def is_running(self, node_id: str) -> bool:
        droplet = self._state.get(node_id)
        return droplet is not None and droplet.status == STATUS_ACTIVE

    def is_terminated(self, node_id: str) -> bool:
        droplet = self._state.get(node_id)
        return droplet is None or droplet.status == STATUS_ARCHIVE

    def node_tags(self, node_id: str) -> dict[str, str]:
        droplet = self._state.get(node_id)
        if droplet is None:
            droplet = self._cluster_droplet(node_id)
            if droplet is None:
                return {}
            self._state.add([droplet], self._monotonic())
        return decode_node_tags(droplet.tags)

    def _ip(self, node_id: str, private: bool) -> str | None:
        droplet = self._state.get(node_id)
        address = None
        if droplet is not None:
            address = droplet.private_ip if private else droplet.public_ip
        if address is None:
            # DigitalOcean fills in a droplet's networks as it boots; the create reply and a
            # listing taken before then have none. Ray's wait-for-IP loop asks only this and
            # `is_terminated`, so the droplet itself must be fetched here, or the address
            # never arrives.
            fetched = self._fetch_for_address(node_id)
            if fetched is not None:
                address = fetched.private_ip if private else fetched.public_ip
        return address

    def _fetch_for_address(self, node_id: str) -> Droplet | None:
        """The droplet as DigitalOcean describes it now (at most one fetch per node per
        cache_ttl_s: the autoscaler may ask for addresses many times a second)."""
        if self._state.was_terminated(node_id):
            return None
        now = self._monotonic()
        with self._address_lock:
            last = self._address_fetched_at.get(node_id)
            if last is not None and now - last < self.settings.cache_ttl_s:
                return self._state.get(node_id)
            self._address_fetched_at[node_id] = now
        fetched = self.api.get_droplet(_droplet_id(node_id))
        if fetched is None:
            return None
        if not fetched.has_tag(self._cluster_tag):
            raise ForeignDropletError(node_id, self.cluster_name)
        self._state.add([fetched], self._monotonic())
        return fetched

    def internal_ip(self, node_id: str) -> str | None:  # type: ignore[override]
        return self._ip(node_id, private=True)

    def external_ip(self, node_id: str) -> str | None:  # type: ignore[override]
        return self._ip(node_id, private=False)

    # ---- NodeProvider: changes ---------------------------------------------------------

    def create_node(
        self, node_config: dict[str, Any], tags: dict[str, str], count: int
    ) -> dict[str, Any] | None:
        return self.create_node_with_resources_and_labels(node_config, tags, count, {}, {})

    def create_node_with_resources_and_labels(
        self,
        node_config: dict[str, Any],
        tags: dict[str, str],
        count: int,
        resources: dict[str, float],
        labels: dict[str, str],
    ) -> dict[str, Any] | None:
        if count <= 0:
            return {}
        node = NodeSettings.from_node_config(node_config)
        ray_tags = {**tags, TAG_RAY_CLUSTER_NAME: self.cluster_name}
        kind = ray_tags.get(TAG_RAY_NODE_KIND, NODE_KIND_WORKER)
        node_type = ray_tags.get(TAG_RAY_USER_NODE_TYPE, kind)
        if kind == NODE_KIND_HEAD:
            # Before the head exists: Ray's ports must never face the internet, not even
            # while it boots. Every droplet of the cluster carries the tag it is attached by.
            try:
                ensure_firewall(self.api, self.cluster_name, self.settings.firewall,
                                region=node.region or self.settings.region,
                                vpc_uuid=node.vpc_uuid or self.settings.vpc_uuid)
            except DigitalOceanError as err:
                raise NodeLaunchException(
                    category=f"DigitalOcean {err.status_code or 'no reply'}",
                    description=f"the cluster's firewall could not be set up, so no head was created: {err}",
                    src_exc_info=sys.exc_info(),
                ) from err
        user_data = node.user_data
        if user_data is None and kind == NODE_KIND_WORKER:
            user_data = self._worker_user_data(node, node_type, resources, labels)
        token = uuid.uuid4().hex[:16]
        names = droplet_names(self.cluster_name, node_type, token, count)
        droplet_tags = (
            self._cluster_tag,
            launch_tag(token),
            *encode_node_tags(ray_tags),
            *self.settings.extra_tags,
            *node.tags,
        )
        created: list[Droplet] = []
        try:
            for batch in _chunks(names, MAX_NAMES_PER_CREATE):
                request = CreateRequest(
                    names=tuple(batch),
                    region=node.region or self.settings.region,
                    size=node.size,
                    image=node.image,
                    tags=tuple(dict.fromkeys(droplet_tags)),
                    user_data=user_data,
                    vpc_uuid=node.vpc_uuid or self.settings.vpc_uuid,
                    ssh_keys=node.ssh_keys if node.ssh_keys is not None else self.settings.ssh_keys,
                    monitoring=node.monitoring,
                    ipv6=node.ipv6,
                    backups=node.backups,
                )
                batch_droplets = self._create_batch(request, token, created)
                created.extend(batch_droplets)
                self._state.add(batch_droplets, self._monotonic())
        except BaseException as err:
            self._roll_back(token, created, err)
            if isinstance(err, DigitalOceanError):
                raise NodeLaunchException(
                    category=f"DigitalOcean {err.status_code or 'no reply'}",
                    description=str(err),
                    src_exc_info=sys.exc_info(),
                ) from err
            raise
        logger.info(
            "created %d %s droplet(s) of type %s: %s",
            len(created),
            node.size,
            node_type,
            ", ".join(f"{d.id} ({d.name})" for d in created),
        )
        return {
            d.node_id: {"name": d.name, "size": d.size_slug, "status": d.status} for d in created
        }

    def _create_batch(
        self, request: CreateRequest, token: str, created_so_far: list[Droplet]
    ) -> list[Droplet]:
        try:
            return self.api.create_droplets(request)
        except DigitalOceanError as err:
            if not err.outcome_unknown:
                raise
            # The request reached DigitalOcean but no verdict came back: look for what it
            # made, by this launch's tag and the batch's names.
            known = {d.id for d in created_so_far}
            found = [
                d
                for d in self.api.list_droplets(tag=self._cluster_tag)
                if d.has_tag(launch_tag(token)) and d.name in request.names and d.id not in known
            ]
            if len(found) == len(request.names):
                logger.warning(
                    "create of %s got no clear reply (%s) but succeeded; adopting %s",
                    ", ".join(request.names),
                    err,
                    ", ".join(str(d.id) for d in found),
                )
                return found
            # Partly there or not (yet) there: keep what exists for the rollback, which also
            # fences off any droplet of this launch that appears later.
            created_so_far.extend(found)
            raise

    def _roll_back(self, token: str, created: list[Droplet], cause: BaseException) -> None:
        self._state.mark_launch_failed(token)
        doomed = {d.id: d for d in created}
        try:
            for droplet in self.api.list_droplets(tag=self._cluster_tag):
                if token in launch_tokens(droplet.tags):
                    doomed.setdefault(droplet.id, droplet)
        except DigitalOceanError:
            logger.exception("rollback: listing failed; later refreshes will finish the job")
        if not doomed:
            return
        logger.warning(
            "launch failed (%s); destroying the %d droplet(s) it created: %s",
            cause,
            len(doomed),
            ", ".join(str(i) for i in doomed),
        )
        for droplet in doomed.values():
            try:
                self._destroy(droplet)
            except DigitalOceanError:
                logger.exception(
                    "rollback: could not destroy droplet %s; the next refresh retries",
                    droplet.id,
                )

    def _worker_user_data(
        self,
        node: NodeSettings,
        node_type: str,
        resources: Mapping[str, float],
        labels: Mapping[str, str],
    ) -> str:
        start_ray = self.settings.start_ray_from_cloud_init
        bootstrap = WorkerBootstrap(
            cluster_name=self.cluster_name,
            node_type=node_type,
            head_address=self._head_address() if start_ray else "",
            resources=dict(resources),
            labels=dict(labels),
            gpu_runtime=node.gpu_runtime,
            setup_commands=node.setup_commands,
            python_requirements=worker_requirements() if node.head_requirements else node.python_requirements,
            environment=node.environment,
            ray_executable=node.ray_executable,
            start_ray=start_ray,
        )
        return render_user_data(bootstrap)

    def _head_address(self) -> str:
        if self.settings.head_address:
            return self.settings.head_address
        heads = [
            d
            for d in self.droplets()
            if decode_node_tags(d.tags).get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD
        ]
        for head in heads:
            if head.private_ip:
                return f"{head.private_ip}:{self.settings.ray_port}"
        raise ConfigError(
            f"cluster {self.cluster_name!r} has no head droplet with a private IP to join; "
            "start the head with `ray up` or set provider.head_address"
        )

    def set_node_tags(self, node_id: str, tags: dict[str, str]) -> None:
        with self._tag_lock:
            droplet = self._cluster_droplet(node_id)
            if droplet is None:
                raise DigitalOceanError(
                    f"tag droplet {node_id}", "the droplet no longer exists", status_code=404,
                    error_id="not_found",
                )
            remove, add = tag_changes(decode_node_tags(droplet.tags), tags)
            if not remove and not add:
                return
            # Add before removing: a reader in between sees a duplicate, never a gap.
            for tag in add:
                if tag not in self._known_tags:
                    self.api.ensure_tag(tag)
                    self._known_tags.add(tag)
                self.api.tag_droplet(droplet.id, tag)
            for tag in remove:
                self.api.untag_droplet(droplet.id, tag)
            new_tags = [t for t in droplet.tags if t not in set(remove)] + add
            self._state.set_tags(node_id, new_tags, self._monotonic())

    def terminate_node(self, node_id: str) -> dict[str, Any] | None:
        droplet = self._cluster_droplet(node_id)
        if droplet is None:
            # Already gone: destroying is idempotent.
            self._state.mark_terminated(node_id, self._monotonic())
            return None
        logger.info("destroying droplet %s (%s)", droplet.id, droplet.name)
        self._destroy(droplet)
        if decode_node_tags(droplet.tags).get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD and self.settings.firewall.enabled:
            # The head goes last in `ray down`: the cluster is gone, and so goes its firewall.
            remove_firewall(self.api, self.cluster_name)
        return None

    def terminate_nodes(self, node_ids: list[str]) -> dict[str, Any] | None:
        # Try every node even if one fails: a droplet left running keeps billing.
        first_error: BaseException | None = None
        for node_id in node_ids:
            try:
                self.terminate_node(node_id)
            except (DigitalOceanError, ForeignDropletError) as err:
                logger.error("could not terminate node %s: %s", node_id, err)
                first_error = first_error or err
        if first_error is not None:
            raise first_error
        return None

    @staticmethod
    def bootstrap_config(cluster_config: dict[str, Any]) -> dict[str, Any]:
        """Validate the provider and node configs before `ray up` creates anything, and
        put the fingerprint of ``auth.ssh_public_key`` on droplets if no keys are listed."""
        config = copy.deepcopy(cluster_config)
        provider = config.setdefault("provider", {})
        ProviderSettings.from_provider_config(provider)
        for name, node_type in (config.get("available_node_types") or {}).items():
            try:
                NodeSettings.from_node_config(node_type.get("node_config") or {})
            except ConfigError as err:
                raise ConfigError(f"available_node_types.{name}: {err}") from err
        public_key = (config.get("auth") or {}).get("ssh_public_key")
        if not provider.get("ssh_keys") and public_key:
            path = Path(public_key).expanduser()
            if path.is_file():
                provider["ssh_keys"] = [ssh_fingerprint(path.read_text(encoding="utf-8"))]
            else:
                logger.warning(
                    "auth.ssh_public_key %s not found and provider.ssh_keys is empty: "
                    "droplets will get no SSH key", public_key,
                )
        return config


def _droplet_id(node_id: str) -> int:
    try:
        return int(node_id)
    except ValueError as err:
        raise ValueError(f"{node_id!r} is not a droplet id") from err
