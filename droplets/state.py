"""The provider's view of its cluster's droplets, guarded by one lock.

Listings are slow and run outside the lock, so a listing that started before a local change
(a create, a tag write, a destroy) must not undo it when it lands: every local change is
stamped, and `apply_listing` keeps what changed after the listing started.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace

from droplets.model import STATUS_ARCHIVE, Droplet


class ClusterState:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._droplets: dict[str, Droplet] = {}
        self._listed_at: float | None = None
        self._changed_at: dict[str, float] = {}
        self._terminated: dict[str, float] = {}
        self._failed_launches: set[str] = set()

    # ---- reads -----------------------------------------------------------------------

    def is_fresh(self, now: float, ttl_s: float) -> bool:
        with self._lock:
            return self._listed_at is not None and now - self._listed_at < ttl_s

    def get(self, node_id: str) -> Droplet | None:
        with self._lock:
            return self._droplets.get(node_id)

    def droplets(self) -> list[Droplet]:
        with self._lock:
            return [d for d in self._droplets.values() if d.status != STATUS_ARCHIVE]

    def was_terminated(self, node_id: str) -> bool:
        with self._lock:
            return node_id in self._terminated

    def failed_launches(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._failed_launches)

    # ---- local changes -----------------------------------------------------------------

    def add(self, droplets: Iterable[Droplet], now: float) -> None:
        with self._lock:
            for droplet in droplets:
                if droplet.node_id in self._terminated:
                    continue
                self._droplets[droplet.node_id] = droplet
                self._changed_at[droplet.node_id] = now

    def set_tags(self, node_id: str, tags: Iterable[str], now: float) -> None:
        with self._lock:
            droplet = self._droplets.get(node_id)
            if droplet is None:
                return
            self._droplets[node_id] = replace(droplet, tags=tuple(tags))
            self._changed_at[node_id] = now

    def mark_terminated(self, node_id: str, now: float) -> None:
        with self._lock:
            self._droplets.pop(node_id, None)
            self._changed_at.pop(node_id, None)
            self._terminated[node_id] = now

    def mark_launch_failed(self, token: str) -> None:
        with self._lock:
            self._failed_launches.add(token)

    # ---- listings --------------------------------------------------------------------

    def apply_listing(
        self, listed: Iterable[Droplet], started_at: float, now: float, grace_s: float
    ) -> None:
        """Replace the view with a listing that was requested at `started_at`."""
        with self._lock:
            # Destroyed droplets can linger in listings for a moment; after the grace period
            # a droplet we destroyed that is still listed is reported again (and so noticed).
            self._terminated = {
                node_id: at for node_id, at in self._terminated.items() if now - at < grace_s
            }
            fresh: dict[str, Droplet] = {}
            for droplet in listed:
                node_id = droplet.node_id
                if node_id in self._terminated:
                    continue
                cached = self._droplets.get(node_id)
                if cached is not None and self._changed_at.get(node_id, 0.0) > started_at:
                    droplet = replace(droplet, tags=cached.tags)
                fresh[node_id] = droplet
            for node_id, cached in self._droplets.items():
                if node_id not in fresh and self._changed_at.get(node_id, 0.0) > started_at:
                    fresh[node_id] = cached
            self._droplets = fresh
            self._changed_at = {
                node_id: at for node_id, at in self._changed_at.items() if node_id in fresh
            }
            self._listed_at = now
