"""A large, realistic, deterministic fleet for benchmarks and scale tests.

`generate_fleet(10_000, 500)` takes well under a second. The mix (per cluster unless said otherwise):

- folders: a two-level tree (business units under the organization, teams under them); ~90% of projects sit in
  a team folder, ~5% in a business-unit folder, ~5% directly under the organization; ~1% DELETE_REQUESTED
  (those hold no clusters). Project sizes are skewed: a few projects hold many clusters, some hold none.
- Standard ~80%, Autopilot ~20%; node auto-provisioning on ~25% of Standard clusters.
- ~3% of control planes older than 1.26.4-gke.500 (cannot take the setting); ~3% of Standard pools likewise.
- ~15% of Standard pools carry other kubelet settings (cpu_manager_policy static, pod_pids_limit 4096,
  cpu_cfs_quota) that a careless update would wipe.
- usage: clean ~70%, used_before ~15%, in_use ~15% (those run one or two agents that read port 10255).
- some ports already disabled (cluster default, auto-config and pools), a few explicitly enabled.
- labels env=prod/staging/dev on projects and clusters; 1-3 pools per cluster, 1-3 nodes per pool.
"""

from __future__ import annotations

import random
from typing import Any, get_args

from gkesim.fleet import version_tuple
from gkesim.spec import Agent, ClusterSpec, FleetSpec, FolderSpec, PoolSpec, ProjectSpec

ENVS = ("prod", "staging", "dev")
ENV_WEIGHTS = (0.4, 0.25, 0.35)
BUSINESS_UNITS = ("payments", "retail", "platform", "data", "media", "research", "security", "ops")
TEAMS = (
    "core",
    "edge",
    "api",
    "batch",
    "ml",
    "web",
    "infra",
    "billing",
    "search",
    "ingest",
    "mobile",
    "growth",
)
PURPOSES = ("web", "api", "batch", "ml", "data", "ci", "edge", "tools", "jobs", "mesh")
REGIONS = (
    "us-central1",
    "us-east1",
    "us-west1",
    "europe-west1",
    "europe-west4",
    "asia-northeast1",
    "asia-east1",
)
# Versions GKE has shipped; all >= 1.26.4-gke.500. Before 1.32 an unset port means enabled.
CURRENT_VERSIONS = (
    "1.27.16-gke.1287000",
    "1.28.15-gke.1435000",
    "1.29.10-gke.1227000",
    "1.29.1-gke.1589018",
    "1.30.5-gke.1014001",
    "1.30.8-gke.1128000",
    "1.31.4-gke.1183000",
    "1.31.6-gke.1020000",
    "1.32.2-gke.1182001",
    "1.33.1-gke.1107000",
)
CURRENT_WEIGHTS = (0.03, 0.06, 0.1, 0.04, 0.18, 0.12, 0.17, 0.12, 0.12, 0.06)
OLD_VERSIONS = ("1.24.17-gke.2155000", "1.25.16-gke.1041000", "1.26.3-gke.1000", "1.26.4-gke.400")
AGENTS: tuple[str, ...] = get_args(Agent)
OTHER_KUBELET: tuple[dict[str, Any], ...] = (
    {"cpu_manager_policy": "static"},
    {"pod_pids_limit": 4096},
    {"cpu_manager_policy": "static", "cpu_cfs_quota": True},
    {"cpu_manager_policy": "static", "cpu_cfs_quota": True, "pod_pids_limit": 4096},
)


def _split(total: int, weights: list[float]) -> list[int]:
    """Integers proportional to weights that sum exactly to total (largest remainder)."""
    if total == 0 or not weights:
        return [0] * len(weights)
    scale = total / sum(weights)
    raw = [w * scale for w in weights]
    out = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def _folders(rng: random.Random, count: int) -> tuple[list[FolderSpec], list[str], list[str]]:
    """Two levels: ~1/4 business units under the organization, the rest teams under them."""
    top = max(1, min(len(BUSINESS_UNITS), count // 4)) if count else 0
    folders: list[FolderSpec] = []
    units: list[str] = []
    teams: list[str] = []
    for i in range(top):
        fid = str(100_000_000_000 + i)
        folders.append(FolderSpec(id=fid, display_name=BUSINESS_UNITS[i]))
        units.append(f"folders/{fid}")
    for j in range(count - top):
        fid = str(200_000_000_000 + j)
        unit = units[j % top]
        name = f"{BUSINESS_UNITS[j % top]}-{TEAMS[(j // top) % len(TEAMS)]}"
        if j >= top * len(TEAMS):
            name += f"-{j // (top * len(TEAMS)) + 1}"
        folders.append(FolderSpec(id=fid, display_name=name, parent=unit))
        teams.append(f"folders/{fid}")
    return folders, units, teams


def _port(rng: random.Random, disabled: float, enabled: float) -> str:
    roll = rng.random()
    if roll < disabled:
        return "disabled"
    if roll < disabled + enabled:
        return "enabled"
    return "unset"


def _open_by_default(version: str) -> bool:
    """An unset port is enabled on clusters created before 1.32."""
    return (version_tuple(version) or (0, 0, 0, 0)) < (1, 32, 0, 0)


def _cluster(rng: random.Random, name: str, location: str, env: str) -> ClusterSpec:
    autopilot = rng.random() < 0.20
    old_master = rng.random() < 0.03
    version = rng.choice(OLD_VERSIONS) if old_master else rng.choices(CURRENT_VERSIONS, CURRENT_WEIGHTS)[0]
    roll = rng.random()
    usage = "clean" if roll < 0.70 else ("used_before" if roll < 0.85 else "in_use")
    labels = {"env": env, "team": rng.choice(TEAMS)}
    channel = rng.choices(("REGULAR", "STABLE", "RAPID", "UNSPECIFIED"), (0.6, 0.2, 0.1, 0.1))[0]
    nap = not autopilot and rng.random() < 0.25
    default_port = "unset" if autopilot else _port(rng, 0.10, 0.02)
    autoconfig = _port(rng, 0.12, 0.02) if autopilot or nap else "unset"

    pools: list[dict[str, Any]] = []
    for i in range(rng.randint(1, 3)):
        pool: dict[str, Any] = {"name": "default-pool", "nodes": rng.randint(1, 3)}
        if autopilot:
            if i > 0:
                pool.update(
                    name=f"nap-e2-standard-{2 ** (i + 1)}-{rng.getrandbits(32):08x}", autoprovisioned=True
                )
        else:
            if rng.random() < 0.03 and not old_master:
                pool["version"] = rng.choice(OLD_VERSIONS)
            pool["port"] = _port(rng, 0.25 if default_port == "disabled" else 0.06, 0.02)
            if rng.random() < 0.15:
                pool["kubelet"] = dict(rng.choice(OTHER_KUBELET))
            if i > 0:
                if nap and rng.random() < 0.5:
                    pool.update(
                        name=f"nap-n2-standard-{2 ** (i + 1)}-{rng.getrandbits(32):08x}", autoprovisioned=True
                    )
                else:
                    pool["name"] = f"{rng.choice(('pool', 'highmem', 'spot', 'gpu', 'arm'))}-{i}"
        pools.append(pool)

    agents: list[str] = []
    if usage == "used_before":
        pools[0]["usage"] = "used_before"  # an agent read the port once; it is gone now
    elif usage == "in_use":
        # the agents' pool must have its port open; if none has, someone enabled it for them (realistic)
        if autopilot:
            if autoconfig == "disabled" or (autoconfig == "unset" and not _open_by_default(version)):
                autoconfig = "enabled"
            chosen = rng.randrange(len(pools))
        else:
            open_pools = [
                i for i, p in enumerate(pools)
                if p["port"] == "enabled" or (p["port"] == "unset" and _open_by_default(version))
            ]  # fmt: skip
            chosen = open_pools[0] if open_pools else 0
            if not open_pools:
                pools[0]["port"] = "enabled"
        pools[chosen]["usage"] = "in_use"
        agents = rng.sample(AGENTS, rng.choice((1, 1, 2)))
    return ClusterSpec(
        name=name, location=location, mode="autopilot" if autopilot else "standard", version=version,
        release_channel="REGULAR" if autopilot else channel, nap=nap, default_port=default_port,
        autoconfig_port=autoconfig, pools=[PoolSpec(**p) for p in pools], agents=agents, labels=labels,
    )  # fmt: skip


def generate_fleet(clusters: int, projects: int, seed: int = 0, folders: int | None = None) -> FleetSpec:
    """A deterministic fleet of exactly `clusters` clusters over `projects` projects (see the module doc)."""
    if clusters < 0 or projects < 0:
        raise ValueError("clusters and projects must not be negative")
    if clusters and not projects:
        raise ValueError("clusters need at least one project")
    rng = random.Random(seed)
    n_folders = folders if folders is not None else max(2, projects // 10)
    folder_specs, units, teams = _folders(rng, n_folders)

    project_specs: list[ProjectSpec] = []
    for i in range(projects):
        env = rng.choices(ENVS, ENV_WEIGHTS)[0]
        roll = rng.random()
        if teams and roll < 0.90:
            parent = rng.choice(teams)
        elif units and roll < 0.95:
            parent = rng.choice(units)
        else:
            parent = None  # the organization
        team = rng.choice(TEAMS)
        pid = f"{team}-{env}-{i:04d}"
        deleted = i > 0 and rng.random() < 0.01
        project_specs.append(
            ProjectSpec(
                id=pid, number=300_000_000_000 + i, parent=parent, display_name=f"{team.title()} {env} {i}",
                state="DELETE_REQUESTED" if deleted else "ACTIVE", labels={"env": env, "team": team},
            )
        )  # fmt: skip

    # Skewed sizes: a Pareto weight per active project; ~10% of active projects hold no cluster.
    active = [p for p in project_specs if p.state == "ACTIVE"] or project_specs[:1]
    weights = [0.0 if rng.random() < 0.10 else rng.paretovariate(2.0) for _ in active]
    if not any(weights):
        weights[0] = 1.0
    counts = _split(clusters, weights)
    for proj, count in zip(active, counts, strict=True):
        env = proj.labels["env"]
        home = rng.choice(REGIONS)
        for k in range(count):
            region = home if rng.random() < 0.7 else rng.choice(REGIONS)
            location = region if rng.random() < 0.7 else f"{region}-{rng.choice('abcf')}"
            name = f"{env}-{rng.choice(PURPOSES)}-{k}"  # k keeps names unique within the project
            proj.clusters.append(_cluster(rng, name, location, env))
    return FleetSpec(folders=folder_specs, projects=project_specs)
