"""DigitalOcean GPU droplets as Ray autoscaler nodes.

- `droplets.provider.DigitalOceanNodeProvider`: the Ray node provider (``type: external``).
- `droplets.api`: the only module that talks to DigitalOcean (through pydo).
- `droplets.tags`, `droplets.cloud_init`: droplet tags and first-boot user data.
- `droplets.lifecycle`: which droplets exist, why, since when, and what they cost.
"""

from droplets.errors import DigitalOceanError, ForeignDropletError

__all__ = ["DigitalOceanError", "ForeignDropletError"]
