"""Deploy the app to a running cluster with the head's own code.

    python -m deployments.ship cluster_configs/production.yaml [--env NAME=VALUE ...]

`serve deploy` takes only remote URIs for a `working_dir`, and installing voiceq on each GPU
droplet from somewhere else lets a droplet run other code than the head. So this packs the
checkout (what git would track: `.gitignore` is honoured, and the paths in `EXCLUDES` that no
replica imports are left out), uploads it into the cluster's own store through the dashboard
(the path `ray job submit --working-dir` takes), makes it every application's
`runtime_env.working_dir`, and deploys the config through Serve's REST API (the call `serve
deploy` makes). A droplet that boots hours later downloads the same package from the head.
The package's name is its content hash: shipping an unchanged tree changes nothing.

`--env` puts a non-secret setting into the applications' `runtime_env.env_vars` (the build
task and every replica see it). Secrets never go there: the dashboard shows runtime_envs to
anyone who can open it; they reach replicas through the nodes' own environment.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

# Not imported by any replica: kept out of the package (smaller, faster to download on a
# fresh droplet).
EXCLUDES = [".git", "node_modules", "tests", "docs", "benchmarks", "convex", "test-output", "*.pyc", "__pycache__"]

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"


class ShipError(Exception):
    """The config cannot be shipped as given (a bad --env, a config without applications)."""


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not name.replace("_", "").isalnum() or name[0].isdigit():
            raise ShipError(f"--env takes NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def with_code(config: Mapping[str, Any], working_dir: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """`config` with every application's runtime_env running from `working_dir` (a local path,
    replaced by its package URI on upload) and carrying `env`. An application that already
    names a remote working_dir keeps it. Pure."""
    applications = config.get("applications")
    if not applications:
        raise ShipError("the config has no applications to deploy")
    shipped = dict(config)
    shipped["applications"] = []
    for app in applications:
        app = dict(app)
        runtime_env = dict(app.get("runtime_env") or {})
        runtime_env.setdefault("working_dir", str(working_dir))
        runtime_env["excludes"] = sorted({*runtime_env.get("excludes", ()), *EXCLUDES})
        if env:
            runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env}
        app["runtime_env"] = runtime_env
        shipped["applications"].append(app)
    return shipped


def ship(config: Mapping[str, Any], *, working_dir: Path, dashboard: str = DEFAULT_DASHBOARD,
         env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Uploads `working_dir` to the cluster behind `dashboard` and deploys `config` on it.
    Returns the config as deployed (with the package URIs)."""
    deployed = with_code(config, working_dir, env or {})
    client = ServeSubmissionClient(dashboard)
    for app in deployed["applications"]:
        # Rewrites a local working_dir to gcs://_ray_pkg_<content hash>.zip, uploading it
        # only when the cluster does not hold that package yet.
        client._upload_working_dir_if_needed(app["runtime_env"])
    client.deploy_applications(deployed)
    return deployed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.ship", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="a Serve config file (cluster_configs/production.yaml)")
    parser.add_argument("--working-dir", type=Path, default=Path.cwd(), help="the checkout to ship (default: here)")
    parser.add_argument("--address", default=DEFAULT_DASHBOARD, help=f"the Ray dashboard (default {DEFAULT_DASHBOARD})")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a non-secret setting for the applications (repeatable)")
    args = parser.parse_args(argv)
    try:
        config = yaml.safe_load(args.config.read_text())
        deployed = ship(config, working_dir=args.working_dir.resolve(), dashboard=args.address,
                        env=parse_env(args.env))
    except (ShipError, OSError, yaml.YAMLError) as err:
        print(f"ship: {err}", file=sys.stderr)
        return 2
    for app in deployed["applications"]:
        print(f"ship: application {app.get('name', 'default')} deployed with code {app['runtime_env']['working_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
