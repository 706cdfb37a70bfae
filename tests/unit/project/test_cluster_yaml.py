"""cluster.yaml (Ray cluster launcher, AWS): valid by Ray's own schema and defaults merge, no cloud calls; the
security properties the docs promise; and k8s/rayjob.yaml's shape."""
from __future__ import annotations

import copy
import os
import re

import pytest
import repo_root
import yaml

ROOT = repo_root.REPO
CLUSTER_YAML = os.path.join(ROOT, "cluster.yaml")
RAYJOB_YAML = os.path.join(ROOT, "k8s", "rayjob.yaml")
# GPUs per instance type used in cluster.yaml (Ray asks EC2 for this at launch; the test must not call AWS)
GPUS = {"g5.xlarge": 1, "g5.2xlarge": 1, "g5.12xlarge": 4, "g5.48xlarge": 8, "g6.xlarge": 1, "g6.12xlarge": 4,
        "p4d.24xlarge": 8, "p5.48xlarge": 8}
WORLD = ("0.0.0.0/0", "::/0")
RAY_PORTS = (6379, 8265, 10001)  # GCS, dashboard, Ray client


@pytest.fixture(scope="module")
def raw():
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


def test_ray_validates_and_prepares_it(raw):
    from ray.autoscaler._private.util import prepare_config, validate_config

    # the order `ray up` uses (commands.create_or_update_cluster): merge Ray's AWS defaults, then the JSON schema
    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)
    assert cfg["head_node_type"] in cfg["available_node_types"]
    # merge_setup_commands: the project install must run on the head and on every worker
    assert any("pip install" in c and "~/simmim-ray" in c for c in cfg["head_setup_commands"])
    assert any("pip install" in c and "~/simmim-ray" in c for c in cfg["worker_setup_commands"])


def test_ray_rejects_a_broken_copy(raw):
    """The validation above is real: an unknown top-level key fails it."""
    import jsonschema

    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(raw)
    bad["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))


def test_cpu_head_and_autoscaling_gpu_workers(raw):
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert head["node_config"]["InstanceType"] not in GPUS and head.get("resources", {}).get("GPU", 0) == 0
    workers = {k: v for k, v in types.items() if k != raw["head_node_type"]}
    every = workers
    # CPU-only preprocessing nodes (docs/data.md) are the one worker type without GPUs
    workers = {k: v for k, v in workers.items() if v.get("labels", {}).get("simmim-role") != "preprocess"}
    gpus = {k: GPUS.get(v["node_config"]["InstanceType"], 0) for k, v in workers.items()}
    assert all(n >= 1 for n in gpus.values()), f"every worker type must have GPUs: {gpus}"
    assert 1 in gpus.values() and any(n > 1 for n in gpus.values()), f"need a 1-GPU and a multi-GPU type: {gpus}"
    # min 0: no GPU node runs (or bills) until trials ask for one
    assert all(v.get("min_workers", 0) == 0 for v in workers.values())
    assert all(v.get("max_workers", 0) >= 1 for v in every.values())


def test_a_cpu_only_type_carries_the_preprocessing_label(raw):
    """data.preprocess_nodes=simmim-role=preprocess sends reading and decoding to nodes of this type."""
    prep = [v for v in raw["available_node_types"].values()
            if v.get("labels", {}).get("simmim-role") == "preprocess"]
    assert len(prep) == 1 and prep[0]["node_config"]["InstanceType"] not in GPUS


def declared_ray_range():
    """The `ray` requirement's version range in pyproject.toml (what users install next to a cluster)."""
    import tomllib

    from packaging.requirements import Requirement

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == "ray"]
    return req.specifier


def image_ray_version(image: str) -> str:
    """`rayproject/ray:2.60.0-py311-gpu` -> 2.60.0 (Ray's images and ours are tagged with their Ray version)."""
    return image.split(":")[1].split("-")[0]


def test_cuda_image_pins_one_ray_version_in_the_declared_range(raw):
    image = raw["docker"]["image"]
    assert image.startswith("rayproject/ray") and "gpu" in image.split(":")[1]
    # a client joins only a cluster of its own Ray version: every node runs one, and users can install it here
    versions = {image_ray_version(raw["docker"][k]) for k in ("image", "head_image", "worker_image")
                if k in raw["docker"]}
    assert len(versions) == 1, versions
    assert versions <= set(declared_ray_range().filter(versions)), (versions, str(declared_ray_range()))


def test_setup_installs_this_project(raw):
    assert raw["file_mounts"].get("~/simmim-ray") == "."
    assert any(re.search(r"pip install .*~/simmim-ray", c) for c in raw["setup_commands"])


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (str(k),), k, v
            yield from _walk(v, path + (str(k),))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, path + (str(i),))


def test_no_ray_port_opened_to_the_world(raw):
    rules = raw["provider"].get("security_group", {}).get("IpPermissions", [])
    for node_type in raw["available_node_types"].values():
        rules += node_type["node_config"].get("SecurityGroupRules", [])
    for rule in rules:
        ranges = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + \
                 [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        if not any(r in WORLD for r in ranges):
            continue
        lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
        every_port = rule.get("IpProtocol") == "-1" or lo == -1
        assert not every_port and not any(lo <= p <= hi for p in RAY_PORTS), f"opens a Ray port to the world: {rule}"
    # and the dashboard does not listen beyond the head itself (users tunnel with `ray dashboard cluster.yaml`)
    head_cmds = " ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmds and "0.0.0.0" not in head_cmds


def test_token_auth_on_every_node(raw):
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in raw[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
    # the token travels as a file, never as text in the config
    assert raw["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"


def test_no_secrets_in_the_config(raw):
    secret_key = re.compile(r"secret|password|passwd|access_key|session_token|credential", re.I)
    for path, key, value in _walk(raw):
        assert not secret_key.search(str(key)), f"credential-like key {'/'.join(path)}"
    text = open(CLUSTER_YAML).read()
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), "an AWS access key id"
    assert not re.search(r"RAY_AUTH_TOKEN=\S", text), "a literal Ray token"
    assert not re.search(r"\b[0-9a-f]{64}\b", text), "something shaped like a Ray token"


def test_nothing_turns_token_auth_off():
    """docs/security.md promises it: no code, config or manifest of the project disables Ray's token auth."""
    hits = []
    for top in ("simmim_ray", "k8s", "search_spaces", "cluster.yaml"):
        base = os.path.join(ROOT, top)
        files = [base] if os.path.isfile(base) else [os.path.join(d, f) for d, _, fs in os.walk(base) for f in fs
                                                      if f.endswith((".py", ".yaml", ".yml"))]
        for path in files:
            text = open(path).read()
            if re.search(r"RAY_AUTH_MODE\W{0,5}disabled|mode:\s*disabled", text):
                hits.append(path)
    assert not hits


def test_every_key_has_a_comment():
    """As Ray's example configs do: each key has a comment on its line or on the line(s) right above it."""
    lines = open(CLUSTER_YAML).read().splitlines()
    missing = []

    def visit(node):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                line = k.start_mark.line
                above = next((lines[i].strip() for i in range(line - 1, -1, -1) if lines[i].strip()), "")
                if "#" not in lines[line] and not above.startswith("#"):
                    missing.append(f"{line + 1}: {lines[line].strip()}")
                visit(v)
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                visit(v)

    with open(CLUSTER_YAML) as f:
        visit(yaml.compose(f, Loader=yaml.SafeLoader))
    assert not missing, "keys without a comment:\n" + "\n".join(missing)


def test_rayjob_manifest_shape():
    with open(RAYJOB_YAML) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    jobs = [d for d in docs if d.get("kind") == "RayJob"]
    assert len(jobs) == 1 and jobs[0]["apiVersion"] == "ray.io/v1"
    spec = jobs[0]["spec"]
    assert spec["entrypoint"].startswith("simmim-ray search")
    assert "--storage-path s3://" in spec["entrypoint"] or "--storage-path gs://" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    # one Ray version everywhere (KubeRay's rayVersion, the images' tags), in the declared range, and the same as
    # cluster.yaml's (the docs build the k8s image from that Ray image)
    pinned = cluster["rayVersion"]
    assert list(declared_ray_range().filter([pinned])) == [pinned], (pinned, str(declared_ray_range()))
    with open(CLUSTER_YAML) as f:
        assert image_ray_version(yaml.safe_load(f)["docker"]["image"]) == pinned
    assert cluster["authOptions"]["mode"] == "token"  # KubeRay generates the token Secret and sets it on pods
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert image_ray_version(head["image"]) == pinned  # the image tag names its Ray version
    for g in spec["rayClusterSpec"]["workerGroupSpecs"]:
        assert image_ray_version(g["template"]["spec"]["containers"][0]["image"]) == pinned
    # nothing exposed outside the cluster network: no LoadBalancer/NodePort services, no Ingress
    assert not [d for d in docs if d.get("kind") == "Ingress"]
    assert not [d for d in docs if d.get("kind") == "Service" and d["spec"].get("type") in ("LoadBalancer",
                                                                                              "NodePort")]
    assert "serviceType" not in cluster["headGroupSpec"]
    groups = cluster["workerGroupSpecs"]
    assert groups and all(g["minReplicas"] == 0 for g in groups)
    gpus = [int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) for g in groups]
    assert all(n >= 1 for n in gpus)
    text = open(RAYJOB_YAML).read()
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text) and "AWS_SECRET_ACCESS_KEY" not in text
