"""Offline checks of the KubeRay manifests and the Dockerfile in ``k8s/``.

Every RayJob and RayCluster document is validated against the ``v1`` openAPIV3Schema of the
KubeRay CRDs kept in ``shared/k8s-crds/`` beside the repository or inside it, or in
``$ALSCALE_K8S_CRDS`` (jsonschema, Draft 4), made as strict as the
API server: fields that have a default are not required (the server fills them in before it
validates) and unknown fields are rejected (``additionalProperties: false`` added wherever a
schema lists its properties).  The rules the schema does not hold -- the operator's own checks
-- are checked in Python beside it, and so are alscale's own: the image matches the Ray pin in
``pyproject.toml``, resources are requested and limited, the dashboard and client ports stay
inside the cluster, the mounted config is the one the entrypoint reads, the job scripts the
manifests run are where the image has them, and the documented ``kubectl apply`` brings the
ConfigMaps the pods mount.  Across the manifests: every container runs the same image, the
configured ``actors`` fit the worker groups' CPUs at full scale, and each manifest's head mounts
the config its commands read (``--config``).

The negative tests break one thing at a time in a valid manifest and expect the check to name
it, so a validator that accepts everything fails here.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import posixpath
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parents[2]
K8S_DIR = REPO / "k8s"
# the shared/ folder beside the repository, or inside it where a checkout carries one
_CRD_PLACES = [REPO.parent / "shared" / "k8s-crds", REPO / "shared" / "k8s-crds"]
CRD_DIR = Path(os.environ.get("ALSCALE_K8S_CRDS") or next((d for d in _CRD_PLACES if d.is_dir()), _CRD_PLACES[0]))
CRD_FILES = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}

SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
NAME_LIMITS = {"RayJob": 47, "RayCluster": 53}
PRIVATE_PORTS = {8265: "dashboard", 10001: "client"}
EXPOSED_SERVICE_TYPES = {"NodePort", "LoadBalancer"}

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

CRDS_PRESENT = all((CRD_DIR / name).is_file() for name in CRD_FILES.values())


# --------------------------------------------------------------------------- helpers


def ray_pin() -> str:
    """Return the Ray version pinned in pyproject.toml (``ray[...]==X.Y.Z``)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        match = re.fullmatch(r"ray(\[[^\]]*\])?==([0-9][0-9a-z.]*)", dep.replace(" ", ""))
        if match:
            return match.group(2)
    raise AssertionError(f"pyproject.toml pins no ray version with '=='; dependencies: {deps}")


def _strict(node):
    """Return a copy of a CRD schema node with defaulted fields optional, unknown fields rejected."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    props = out.get("properties")
    if isinstance(props, dict):
        if "required" in out:
            required = [name for name in out["required"] if "default" not in props.get(name, {})]
            if required:
                out["required"] = required
            else:
                del out["required"]
        if "additionalProperties" not in out and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def load_validator(kind: str):
    """Build a Draft 4 validator for the ``v1`` schema of ``kind`` (RayJob or RayCluster)."""
    crd = yaml.load((CRD_DIR / CRD_FILES[kind]).read_text(), Loader=Loader)
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def schema_errors(doc: dict, validator) -> list[str]:
    """Return one line per schema violation of ``doc``."""
    return [
        f"{'/'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}"
        for err in validator.iter_errors(doc)
    ]


def _cluster_spec(doc: dict) -> dict | None:
    spec = doc.get("spec") or {}
    return spec.get("rayClusterSpec") if doc.get("kind") == "RayJob" else spec


def _pod_templates(doc: dict):
    """Yield (label, pod spec) for every pod template of a RayJob / RayCluster."""
    cluster = _cluster_spec(doc) or {}
    head = cluster.get("headGroupSpec") or {}
    yield "head", (head.get("template") or {}).get("spec") or {}
    for group in cluster.get("workerGroupSpecs") or []:
        yield f"worker group {group.get('groupName')}", (group.get("template") or {}).get("spec") or {}
    submitter = (doc.get("spec") or {}).get("submitterPodTemplate")
    if doc.get("kind") == "RayJob" and submitter:
        yield "submitter", submitter.get("spec") or {}


def operator_errors(doc: dict) -> list[str]:
    """The operator's checks that the CRD schema does not hold (KubeRay ``ValidateRayJobSpec``)."""
    kind = doc.get("kind")
    errors = []
    name = (doc.get("metadata") or {}).get("name", "")
    limit = NAME_LIMITS[kind]
    if not DNS1035.match(name) or len(name) > limit:
        errors.append(f"metadata.name must be a DNS-1035 label of at most {limit} characters; got {name!r}")
    spec = doc.get("spec") or {}
    if kind == "RayJob":
        mode = spec.get("submissionMode")
        if mode not in SUBMISSION_MODES:
            errors.append(f"spec.submissionMode must be set to one of {sorted(SUBMISSION_MODES)}; got {mode!r}")
        shutdown = spec.get("shutdownAfterJobFinishes") is True
        ttl = spec.get("ttlSecondsAfterFinished")
        if not isinstance(ttl, (int, type(None))):
            ttl = None  # the schema reports the type
        if ttl is not None and ttl < 0:
            errors.append(f"spec.ttlSecondsAfterFinished must be >= 0; got {ttl}")
        if ttl is not None and ttl > 0 and not shutdown:
            errors.append("spec.ttlSecondsAfterFinished > 0 needs spec.shutdownAfterJobFinishes: true")
        if spec.get("suspend") is True and not shutdown:
            errors.append("spec.suspend: true needs spec.shutdownAfterJobFinishes: true")
        if ("rayClusterSpec" in spec) == ("clusterSelector" in spec):
            errors.append("spec needs exactly one of rayClusterSpec and clusterSelector")
        errors += _rayjob_spec_errors(spec, mode)
        if "runtimeEnvYAML" in spec:
            try:
                env = yaml.load(spec["runtimeEnvYAML"], Loader=Loader)
            except yaml.YAMLError as exc:
                errors.append(f"spec.runtimeEnvYAML does not parse as YAML: {exc}".splitlines()[0])
            else:
                if not isinstance(env, dict):
                    errors.append(f"spec.runtimeEnvYAML must be a mapping; got {type(env).__name__}")
    errors += _autoscaler_errors(_cluster_spec(doc) or {})
    for group in (_cluster_spec(doc) or {}).get("workerGroupSpecs") or []:
        lo, hi = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if not (isinstance(lo, int) and isinstance(hi, int)):
            continue  # the schema reports the type
        if lo > hi:
            errors.append(f"worker group {group.get('groupName')}: minReplicas {lo} > maxReplicas {hi}")
        replicas = group.get("replicas")
        if isinstance(replicas, int) and not lo <= replicas <= hi:
            errors.append(f"worker group {group.get('groupName')}: replicas {replicas} not in [{lo}, {hi}]")
    return errors


def _rayjob_spec_errors(spec: dict, mode) -> list[str]:
    """KubeRay's ``ValidateRayJobSpec`` rules on submission mode, cluster selector, deadline and retries
    (v1.7.0, ray-operator/controllers/ray/utils/validation.go), which the CRD schema does not hold."""
    errors = []
    selector = spec.get("clusterSelector")
    if selector:  # an empty selector is no selector (len(ClusterSelector) != 0)
        if not selector.get("ray.io/cluster"):
            errors.append("spec.clusterSelector['ray.io/cluster'] must name a cluster")
        if mode == "SidecarMode":
            errors.append("spec.clusterSelector is not supported in SidecarMode")
        if spec.get("suspend") is True:
            errors.append("spec.suspend is not supported with spec.clusterSelector")
    if mode == "InteractiveMode" and isinstance(spec.get("backoffLimit"), int) and spec["backoffLimit"] > 0:
        errors.append(f"spec.backoffLimit must be 0 or unset in InteractiveMode; got {spec['backoffLimit']}")
    if mode == "SidecarMode":
        for field in ("submitterPodTemplate", "submitterConfig"):
            if spec.get(field) is not None:
                errors.append(f"spec.{field} is not supported in SidecarMode")
        head = (((spec.get("rayClusterSpec") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
        if head.get("restartPolicy") not in (None, "", "Never"):
            errors.append("the head pod's restartPolicy must be Never or unset in SidecarMode")
    deadline, retries = spec.get("activeDeadlineSeconds"), spec.get("backoffLimit")
    if isinstance(deadline, int) and deadline <= 0:
        errors.append(f"spec.activeDeadlineSeconds must be > 0 when set; got {deadline}")
    if isinstance(retries, int) and retries < 0:
        errors.append(f"spec.backoffLimit must be >= 0; got {retries}")
    return errors


def _autoscaler_errors(cluster: dict) -> list[str]:
    """KubeRay's ``ValidateRayClusterSpec`` rules on autoscaling and group resources (v1.7.0, validation.go)."""
    errors = []
    options = cluster.get("autoscalerOptions") or {}
    v2 = options.get("version") == "v2"
    head = ((cluster.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    head_env = {e.get("name"): e.get("value") for c in (head.get("containers") or [])[:1] for e in c.get("env") or []}
    v2 = v2 or head_env.get("RAY_enable_autoscaler_v2") in ("1", "true")
    groups = [("head", cluster.get("headGroupSpec") or {})] + [(g.get("groupName"), g) for g in cluster.get("workerGroupSpecs") or []]
    for name, group in groups:
        starts = group.get("rayStartParams") or {}
        if any(key in starts for key in ("num-cpus", "num-gpus", "memory", "resources")) and group.get("resources"):
            errors.append(f"{name} group: resources set in both rayStartParams and resources")
        if "labels" in starts:
            errors.append(f"{name} group: rayStartParams['labels'] is not supported")
    for name, group in groups[1:]:
        idle = group.get("idleTimeoutSeconds")
        if isinstance(idle, int) and idle < 0:
            errors.append(f"worker group {name}: idleTimeoutSeconds must be non-negative")
        elif idle is not None and not v2:
            errors.append(f"worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled "
                          "(autoscalerOptions.version: v2)")
        if not cluster.get("enableInTreeAutoscaling") and ("minReplicas" not in group or "maxReplicas" not in group):
            errors.append(f"worker group {name} must set both minReplicas and maxReplicas when autoscaling is disabled")
    if v2:
        for name, group in groups:
            policy = ((group.get("template") or {}).get("spec") or {}).get("restartPolicy")
            if policy not in (None, "", "Never"):
                errors.append(f"{name} group: restartPolicy should be Never or unset with autoscaler v2")
    idle = options.get("idleTimeoutSeconds")
    if isinstance(idle, int) and idle < 0:
        errors.append("autoscalerOptions.idleTimeoutSeconds must be non-negative")
    return errors


def alscale_errors(doc: dict, pin: str) -> list[str]:
    """alscale's own rules: pinned image, resources, private ports, autoscaling, cleanup."""
    errors = []
    cluster = _cluster_spec(doc) or {}
    if cluster.get("rayVersion") != pin:
        errors.append(f"rayVersion must be {pin!r} (pyproject.toml); got {cluster.get('rayVersion')!r}")
    if cluster.get("enableInTreeAutoscaling") is not True:
        errors.append("enableInTreeAutoscaling must be true")
    head = cluster.get("headGroupSpec") or {}
    if head.get("serviceType", "ClusterIP") != "ClusterIP":
        errors.append(f"headGroupSpec.serviceType must be ClusterIP; got {head.get('serviceType')!r}")
    if head.get("enableIngress"):
        errors.append("headGroupSpec.enableIngress must not be true: the dashboard stays in the cluster")
    service_type = (((head.get("headService") or {}).get("spec")) or {}).get("type", "ClusterIP")
    if service_type in EXPOSED_SERVICE_TYPES:
        errors.append(f"headGroupSpec.headService.spec.type must be ClusterIP; got {service_type!r}")
    image_tag = re.compile(rf":[^:/]*\bray{re.escape(pin)}\b[^:/]*$")
    for label, pod in _pod_templates(doc):
        if pod.get("hostNetwork"):
            errors.append(f"{label}: hostNetwork exposes the Ray ports on the node")
        for container in pod.get("containers") or []:
            where = f"{label} container {container.get('name')}"
            image = container.get("image", "")
            if not image_tag.search(image):
                errors.append(f"{where}: image tag must carry 'ray{pin}'; got {image!r}")
            resources = container.get("resources") or {}
            for part in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(part) or {})
                if missing:
                    errors.append(f"{where}: resources.{part} lacks {sorted(missing)}")
            for port in container.get("ports") or []:
                if port.get("hostPort"):
                    what = PRIVATE_PORTS.get(port.get("containerPort"), "a Ray")
                    errors.append(f"{where}: hostPort {port['hostPort']} exposes {what} port")
    if doc.get("kind") == "RayJob":
        spec = doc["spec"]
        if spec.get("shutdownAfterJobFinishes") is not True:
            errors.append("a RayJob must set shutdownAfterJobFinishes: true")
        if not spec.get("ttlSecondsAfterFinished"):
            errors.append("a RayJob must set ttlSecondsAfterFinished")
    return errors


def all_errors(doc: dict, validators: dict, pin: str) -> list[str]:
    return (
        schema_errors(doc, validators[doc["kind"]]) + operator_errors(doc) + alscale_errors(doc, pin)
    )


def image_errors(docs: list[tuple[str, dict]]) -> list[str]:
    """Every container of every RayJob and RayCluster runs one image, in full (registry, name, tag):
    a driver and workers of different builds disagree on alscale's code, and a submitter of
    another build on the job script's flags."""
    images: dict[str, list[str]] = {}
    for name, doc in docs:
        if doc.get("kind") in CRD_FILES:
            for label, pod in _pod_templates(doc):
                for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                    images.setdefault(container.get("image", ""), []).append(f"{name} {label} container {container.get('name')}")
    if len(images) <= 1:
        return []
    return [f"one image for every container; got {len(images)}: " + "; ".join(f"{image!r} in {', '.join(where)}"
                                                                            for image, where in sorted(images.items()))]


def _cpus(quantity) -> float | None:
    """A Kubernetes CPU quantity ("4", 4, "500m") in CPUs, or None."""
    text = str(quantity)
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return None


def _worker_cpus(group: dict) -> float:
    """The CPUs Ray counts on one pod of a worker group: rayStartParams num-cpus, else what KubeRay takes
    from the Ray container (its CPU limit, else its request)."""
    starts = group.get("rayStartParams") or {}
    if "num-cpus" in starts:
        return _cpus(starts["num-cpus"]) or 0.0
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    resources = containers[0].get("resources") or {}
    quantity = (resources.get("limits") or {}).get("cpu", (resources.get("requests") or {}).get("cpu"))
    return (_cpus(quantity) or 0.0) if quantity is not None else 0.0


def _mounted_configs(doc: dict, configmaps: dict[str, dict]):
    """Yield (mount path, ConfigMap name, its data) for each ConfigMap the head container mounts."""
    head = ((_cluster_spec(doc) or {}).get("headGroupSpec") or {}).get("template", {}).get("spec") or {}
    volumes = {v.get("name"): v for v in head.get("volumes") or []}
    for container in (head.get("containers") or [])[:1]:
        for mount in container.get("volumeMounts") or []:
            ref = (volumes.get(mount.get("name")) or {}).get("configMap")
            if ref:
                yield mount.get("mountPath", ""), ref.get("name"), (configmaps.get(ref.get("name")) or {}).get("data") or {}


def capacity_errors(doc: dict, configmaps: dict[str, dict]) -> list[str]:
    """The ``actors`` of each selection config the head mounts fit the cluster's worker CPUs at full
    scale (sum over worker groups of maxReplicas x CPUs per pod; the head runs no actor).

    Each shard actor takes one CPU: more actors than that never all start, and the selection waits
    for CPUs the autoscaler may not add.
    """
    errors = []
    cluster = _cluster_spec(doc) or {}
    capacity = sum(group.get("maxReplicas", group.get("replicas", 0)) * _worker_cpus(group)
                   for group in cluster.get("workerGroupSpecs") or [] if isinstance(group.get("maxReplicas", 0), int))
    for _, configmap, data in _mounted_configs(doc, configmaps):
        for key, text in data.items():
            if not key.endswith(".toml"):
                continue
            actors = tomllib.loads(text).get("actors")
            if isinstance(actors, int) and actors > capacity:
                errors.append(f"ConfigMap {configmap} {key}: actors = {actors} does not fit the worker groups' {capacity:g} CPUs "
                              "(maxReplicas x CPUs per pod)")
    return errors


def config_mount_errors(doc: dict, config_path: str, configmaps: dict[str, dict]) -> list[str]:
    """``config_path`` (what the job is told: ``--config``) is a key of a ConfigMap the head container
    mounts at its folder, and that ConfigMap is in k8s/."""
    folder, key = posixpath.split(posixpath.normpath(config_path))
    mounted = [(path, name, data) for path, name, data in _mounted_configs(doc, configmaps)
               if posixpath.normpath(path) == folder]
    if not mounted:
        where = sorted(path for path, _, _ in _mounted_configs(doc, configmaps))
        return [f"--config {config_path}: the head mounts no ConfigMap at {folder} (ConfigMaps mounted at {where})"]
    (_, name, data), = mounted
    if name not in configmaps:
        return [f"--config {config_path}: ConfigMap {name!r} is not in k8s/"]
    if key not in data:
        return [f"--config {config_path}: ConfigMap {name!r} has no key {key!r} (keys {sorted(data)})"]
    return []


def documented_config_paths(path: Path) -> list[str]:
    """The ``--config`` paths of the job commands a manifest runs (a RayJob's entrypoint) or documents
    (the ``python .../jobs/...`` lines of its header)."""
    text = path.read_text()
    commands = [line for line in text.splitlines() if line.lstrip("# ").startswith("python ")]
    commands += [doc["spec"]["entrypoint"] for doc in yaml.load_all(text, Loader=Loader)
                 if doc and doc.get("kind") == "RayJob" and doc.get("spec", {}).get("entrypoint")]
    return [match for command in commands for match in re.findall(r"--config[ =](\S+)", command)]


def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.y*ml")):
        for doc in yaml.load_all(path.read_text(), Loader=Loader):
            if doc:
                docs.append((path.name, doc))
    return docs


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def validators():
    if not CRDS_PRESENT:
        pytest.skip(f"KubeRay CRDs not found in {CRD_DIR} (expected shared/k8s-crds beside or inside the repo)")
    return {kind: load_validator(kind) for kind in CRD_FILES}


@pytest.fixture(scope="module")
def pin():
    return ray_pin()


@pytest.fixture(scope="module")
def docs():
    found = k8s_documents()
    kinds = {doc.get("kind") for _, doc in found}
    assert {"RayJob", "RayCluster", "ConfigMap"} <= kinds, f"k8s/ holds only {sorted(kinds)}"
    return found


@pytest.fixture(scope="module")
def rayjob(docs):
    return next(doc for _, doc in docs if doc["kind"] == "RayJob")


# --------------------------------------------------------------------------- positive checks


def test_every_ray_manifest_is_valid(docs, validators, pin):
    checked = 0
    for name, doc in docs:
        if doc["kind"] in CRD_FILES:
            assert doc["apiVersion"] == "ray.io/v1", name
            assert all_errors(doc, validators, pin) == [], name
            checked += 1
    assert checked >= 2


def test_no_exposed_service_or_ingress(docs):
    for name, doc in docs:
        assert doc.get("kind") != "Ingress", f"{name}: no ingress for the Ray dashboard"
        if doc.get("kind") == "Service":
            assert doc.get("spec", {}).get("type", "ClusterIP") == "ClusterIP", name


def test_config_is_mounted_where_the_entrypoint_reads_it(docs, rayjob, tmp_path, monkeypatch):
    args = shlex.split(rayjob["spec"]["entrypoint"])
    assert args[0] == "python"
    script = Path(args[1])
    assert script.parts[-2] == "jobs" and (REPO / "jobs" / script.name).is_file(), script
    # the entrypoint's flags are ones the job script accepts
    monkeypatch.syspath_prepend(str(REPO / "jobs"))
    spec = importlib.util.spec_from_file_location("k8s_entrypoint", REPO / "jobs" / script.name)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    parsed = job.parse_args(args[2:])
    config_path = Path(parsed.config)

    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for c in head["containers"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in head["volumes"]}
    (volume,) = [name for name, path in mounts.items() if Path(path) == config_path.parent]
    configmap_name = volumes[volume]["configMap"]["name"]
    configmaps = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "ConfigMap"}
    data = configmaps[configmap_name]["data"]
    assert config_path.name in data
    # the mounted config is one that `alscale select --config` accepts
    from alscale.config import make_settings

    local = tmp_path / config_path.name
    local.write_text(data[config_path.name])
    settings = make_settings(local)
    # every pod reads pool, model and output through the object store: the pods mount no volume
    assert settings.pool.startswith("s3://") and settings.out.startswith("s3://")
    assert all(m.startswith("s3://") for m in settings.model)
    assert settings.k == tomllib.loads(data[config_path.name])["k"]


def test_the_manifests_run_the_job_scripts_where_the_image_has_them():
    """Every ``python .../jobs/<script>.py`` in k8s/ (the RayJob entrypoint, the header commands)
    names the folder k8s/Dockerfile copies ``jobs/`` to, and a script that exists."""
    workdir, jobs_dir = "/", None
    for line in (K8S_DIR / "Dockerfile").read_text().splitlines():
        if match := re.match(r"WORKDIR\s+(\S+)", line):
            workdir = posixpath.join(workdir, match.group(1))
        elif match := re.match(r"COPY\s+(?:--\S+\s+)*jobs/?\s+(\S+)", line):
            jobs_dir = posixpath.normpath(posixpath.join(workdir, match.group(1)))
    assert jobs_dir, "k8s/Dockerfile copies no jobs/ folder"
    scripts = [script for path in sorted(K8S_DIR.glob("*.y*ml"))
               for script in re.findall(r"python\s+(\S+\.py)\b", path.read_text())]
    assert len(scripts) >= 2, scripts
    for script in scripts:
        assert posixpath.dirname(script) == jobs_dir, (script, jobs_dir)
        assert (REPO / "jobs" / posixpath.basename(script)).is_file(), script


def test_the_documented_apply_brings_the_configmaps_the_pods_mount(docs):
    """A pod whose ConfigMap volume names no ConfigMap never starts, so the ``kubectl apply``
    line in a manifest's header applies the ConfigMaps its pods mount (unless optional)."""
    configmap_files = {doc["metadata"]["name"]: f"k8s/{name}" for name, doc in docs if doc["kind"] == "ConfigMap"}
    checked = 0
    for path in sorted(K8S_DIR.glob("*.y*ml")):
        text = path.read_text()
        applied = {f for line in re.findall(r"^#\s+kubectl apply (.*)$", text, flags=re.MULTILINE)
                   for f in re.findall(r"-f\s+(\S+)", line)}
        for doc in yaml.load_all(text, Loader=Loader):
            if not doc or doc["kind"] not in CRD_FILES:
                continue
            assert f"k8s/{path.name}" in applied, f"{path.name}: no `kubectl apply -f k8s/{path.name}` line"
            for label, pod in _pod_templates(doc):
                for volume in pod.get("volumes") or []:
                    ref = volume.get("configMap")
                    if ref and not ref.get("optional"):
                        assert ref["name"] in configmap_files, f"{path.name} {label}: ConfigMap {ref['name']!r} is not in k8s/"
                        assert configmap_files[ref["name"]] in applied, f"{path.name} {label}: apply {configmap_files[ref['name']]} too"
                        checked += 1
    assert checked >= 2


def test_ray_pods_take_object_store_credentials_from_an_optional_secret(docs):
    """The pool, model and output live in an object store: every Ray pod (not the submitter) gets the
    same optional secret's keys as environment variables, the names pyarrow's S3 client reads."""
    readme = (REPO / "README.md").read_text()
    checked = 0
    for name, doc in docs:
        if doc["kind"] not in CRD_FILES:
            continue
        for label, pod in _pod_templates(doc):
            refs = [e.get("secretRef") for c in pod.get("containers", []) for e in c.get("envFrom", [])]
            if label == "submitter":
                assert refs == [], f"{name} {label}: the submitter only submits the job"
                continue
            assert refs == [{"name": "alscale-storage", "optional": True}] * len(pod["containers"]), f"{name} {label}"
            checked += 1
    assert checked >= 4
    assert "kubectl create secret generic alscale-storage" in readme


def test_dockerfile_builds_from_the_pinned_ray_image(docs, pin):
    dockerfile = (K8S_DIR / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert len(bases) == 1, bases
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)(-py(\d)(\d+))?(-\w+)?", bases[0])
    assert match, f"expected rayproject/ray:<version>[-pyXY]; got {bases[0]}"
    assert match.group(1) == pin
    # the alscale image tag repeats the base's Python version
    if match.group(2):
        for _, doc in docs:
            if doc["kind"] in CRD_FILES:
                for _, pod in _pod_templates(doc):
                    for container in pod["containers"]:
                        assert container["image"].endswith(match.group(2)), container["image"]
    assert re.search(r"pip install[^\n]*\s\.", dockerfile), "the Dockerfile must pip-install alscale"
    assert re.search(r"^COPY .*jobs/", dockerfile, flags=re.MULTILINE), "the job entrypoints must be copied"


# --------------------------------------------------------------------------- negative checks


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()
_CS = ("spec", "rayClusterSpec")
_W0 = _CS + ("workerGroupSpecs", 0)
_HEAD_C0 = _CS + ("headGroupSpec", "template", "spec", "containers", 0)

BREAKAGES = {
    "misspelled spec field": ([("spec", "shutdownAfterJobFinish"), True], "shutdownAfterJobFinish"),
    "misspelled nested field": ([_W0 + ("maxReplica",), 3], "maxReplica"),
    "wrong type": ([_W0 + ("maxReplicas",), "8"], "maxReplicas"),
    "missing required field": ([_W0 + ("groupName",), _DELETE], "groupName"),
    "min above max": ([_W0 + ("minReplicas",), 9], "minReplicas 9 > maxReplicas 8"),
    "ttl without shutdown": ([("spec", "shutdownAfterJobFinishes"), False], "needs spec.shutdownAfterJobFinishes"),
    "suspend without shutdown": ([("spec", "shutdownAfterJobFinishes"), _DELETE, ("spec", "suspend"), True],
                                 "suspend: true needs"),
    "cluster spec and selector": ([("spec", "clusterSelector"), {"ray.io/cluster": "x"}], "exactly one of"),
    "neither spec nor selector": ([("spec", "rayClusterSpec"), _DELETE], "exactly one of"),
    "runtime env not yaml": ([("spec", "runtimeEnvYAML"), "env_vars: {A: [1,\n"], "runtimeEnvYAML"),
    "no submission mode": ([("spec", "submissionMode"), _DELETE], "submissionMode"),
    "unknown submission mode": ([("spec", "submissionMode"), "BatchMode"], "submissionMode"),
    "name too long": ([("metadata", "name"), "a" * 48], "at most 47"),
    "name not dns-1035": ([("metadata", "name"), "1-alscale"], "DNS-1035"),
    "exposed dashboard": ([_CS + ("headGroupSpec", "serviceType"), "LoadBalancer"], "ClusterIP"),
    "ingress": ([_CS + ("headGroupSpec", "enableIngress"), True], "enableIngress"),
    "host port": ([_HEAD_C0 + ("ports", 1, "hostPort"), 8265], "exposes dashboard port"),
    "image off the pin": ([_HEAD_C0 + ("image",), "registry.example.com/alscale:0.1.0-ray2.9.0-py311"],
                          "image tag must carry"),
    "ray version off the pin": ([_CS + ("rayVersion",), "2.9.0"], "rayVersion"),
    "no limits": ([_HEAD_C0 + ("resources", "limits"), _DELETE], "resources.limits"),
    "group idle timeout without autoscaler v2": ([_W0 + ("idleTimeoutSeconds",), 120], "autoscaler v2 is not enabled"),
    "resources twice": ([_W0 + ("rayStartParams",), {"num-cpus": "2"}, _W0 + ("resources",), {"CPU": "2"}],
                        "resources set in both"),
    "restart policy with autoscaler v2": ([_CS + ("autoscalerOptions", "version"), "v2", _W0 + ("template", "spec", "restartPolicy"),
                                           "Always"], "restartPolicy should be Never"),
    # KubeRay's ValidateRayJobSpec (v1.7.0), rules the CRD schema does not hold
    "sidecar mode with a submitter template": ([("spec", "submissionMode"), "SidecarMode"],
                                               "spec.submitterPodTemplate is not supported in SidecarMode"),
    "sidecar mode with a submitter config": ([("spec", "submissionMode"), "SidecarMode", ("spec", "submitterPodTemplate"), _DELETE,
                                              ("spec", "submitterConfig"), {"backoffLimit": 1}],
                                             "spec.submitterConfig is not supported in SidecarMode"),
    "sidecar mode with a restarting head": ([("spec", "submissionMode"), "SidecarMode", ("spec", "submitterPodTemplate"), _DELETE,
                                             _CS + ("headGroupSpec", "template", "spec", "restartPolicy"), "Always"],
                                            "restartPolicy must be Never or unset in SidecarMode"),
    "sidecar mode on a selected cluster": ([("spec", "submissionMode"), "SidecarMode", ("spec", "submitterPodTemplate"), _DELETE,
                                            ("spec", "rayClusterSpec"), _DELETE, ("spec", "clusterSelector"), {"ray.io/cluster": "alscale"}],
                                           "clusterSelector is not supported in SidecarMode"),
    "selector without a cluster name": ([("spec", "rayClusterSpec"), _DELETE, ("spec", "clusterSelector"), {"ray.io/cluster": ""}],
                                        "must name a cluster"),
    "suspend on a selected cluster": ([("spec", "rayClusterSpec"), _DELETE, ("spec", "clusterSelector"), {"ray.io/cluster": "alscale"},
                                       ("spec", "suspend"), True], "suspend is not supported with spec.clusterSelector"),
    "interactive mode with retries": ([("spec", "submissionMode"), "InteractiveMode"], "backoffLimit must be 0 or unset in InteractiveMode"),
    "zero deadline": ([("spec", "activeDeadlineSeconds"), 0], "activeDeadlineSeconds must be > 0"),
    "negative retries": ([("spec", "backoffLimit"), -1], "backoffLimit must be >= 0"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_rayjob_is_rejected(breakage, rayjob, validators, pin):
    steps, expected = BREAKAGES[breakage]
    broken = copy.deepcopy(rayjob)
    for path, value in zip(steps[::2], steps[1::2]):
        _set(broken, path, value)
    errors = all_errors(broken, validators, pin)
    assert any(expected in line for line in errors), errors


def test_a_misspelled_raycluster_field_is_rejected(docs, validators, pin):
    cluster = copy.deepcopy(next(doc for _, doc in docs if doc["kind"] == "RayCluster"))
    cluster["spec"]["headGroupSpec"]["rayStartParam"] = {}
    errors = all_errors(cluster, validators, pin)
    assert any("rayStartParam'" in line for line in errors), errors
    cluster["spec"]["headGroupSpec"].pop("rayStartParam")
    cluster["metadata"]["name"] = "c" * 54
    assert any("at most 53" in line for line in all_errors(cluster, validators, pin))


def test_a_group_idle_timeout_is_accepted_with_autoscaler_v2(rayjob, validators, pin):
    """The operator's rule, both ways: per-group idleTimeoutSeconds needs autoscalerOptions.version v2."""
    v2 = copy.deepcopy(rayjob)
    _set(v2, _W0 + ("idleTimeoutSeconds",), 120)
    _set(v2, _CS + ("autoscalerOptions", "version"), "v2")
    assert not [e for e in all_errors(v2, validators, pin) if "idleTimeoutSeconds" in e]


def test_the_dockerfile_installs_the_dependencies_before_the_code(tmp_path):
    """Its dependency layer is built from pyproject.toml alone (so a code change keeps it), and lists them all."""
    import shlex
    import subprocess
    import sys
    import tomllib

    dockerfile = (K8S_DIR / "Dockerfile").read_text()
    assert dockerfile.index("pip install --no-cache-dir -r /tmp/requirements.txt") < dockerfile.index("COPY --chown=ray:users alscale/")
    command = re.search(r'RUN (python -c "import tomllib[^\n]*?)\s*\\\n', dockerfile).group(1)
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    args = shlex.split(command)
    out = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    with open(REPO / "pyproject.toml", "rb") as fh:
        assert out.splitlines() == tomllib.load(fh)["project"]["dependencies"]


# --------------------------------------------------------------------------- across the manifests


def _configmaps(docs) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in docs if doc["kind"] == "ConfigMap"}


def test_every_container_runs_the_same_image(docs):
    assert image_errors(docs) == []
    broken = copy.deepcopy(docs)
    rayjob = next(doc for _, doc in broken if doc["kind"] == "RayJob")
    rayjob["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["image"] = "registry.example.com/alscale:0.1.1-ray2.60.0-py311"
    (error,) = image_errors(broken)
    assert "got 2" in error and "rayjob.yaml submitter container ray-job-submitter" in error
    broken = copy.deepcopy(docs)  # the same tag from another registry is another image
    cluster = next(doc for _, doc in broken if doc["kind"] == "RayCluster")
    cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"] = "docker.io/alscale:0.1.0-ray2.60.0-py311"
    assert image_errors(broken) and "raycluster.yaml worker group scorers" in image_errors(broken)[0]


def test_the_configured_actors_fit_the_worker_groups(docs):
    configmaps = _configmaps(docs)
    checked = 0
    for name, doc in docs:
        if doc["kind"] in CRD_FILES:
            assert capacity_errors(doc, configmaps) == [], name
            checked += bool(list(_mounted_configs(doc, configmaps)))
    assert checked == 2
    rayjob = copy.deepcopy(next(doc for _, doc in docs if doc["kind"] == "RayJob"))
    rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"] = 3  # 3 x 4 CPUs < actors = 16
    (error,) = capacity_errors(rayjob, configmaps)
    assert "actors = 16 does not fit the worker groups' 12 CPUs" in error
    rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["rayStartParams"] = {"num-cpus": "8"}  # 3 x 8 = 24: fits
    assert capacity_errors(rayjob, configmaps) == []
    more = copy.deepcopy(configmaps)
    more["alscale-select-config"]["data"]["select.toml"] = re.sub(r"(?m)^actors = \d+$", "actors = 65",
                                                                  more["alscale-select-config"]["data"]["select.toml"])
    cluster = next(doc for _, doc in docs if doc["kind"] == "RayCluster")  # 16 x 4 = 64 CPUs
    assert "actors = 65 does not fit the worker groups' 64 CPUs" in capacity_errors(cluster, more)[0]


def test_each_manifest_mounts_the_config_its_commands_read(docs):
    """The RayJob's entrypoint and the RayCluster header's `ray job submit` line read --config from the
    ConfigMap the head mounts at that folder."""
    configmaps = _configmaps(docs)
    by_file = {name: doc for name, doc in docs if doc["kind"] in CRD_FILES}
    assert sorted(by_file) == ["raycluster.yaml", "rayjob.yaml"]
    for name, doc in by_file.items():
        paths = documented_config_paths(K8S_DIR / name)
        assert paths, f"{name}: no --config in its commands"
        for config_path in paths:
            assert config_mount_errors(doc, config_path, configmaps) == [], (name, config_path)
    cluster = copy.deepcopy(by_file["raycluster.yaml"])
    (config_path,) = set(documented_config_paths(K8S_DIR / "raycluster.yaml"))
    mounts = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    next(m for m in mounts if m["name"] == "alscale-config")["mountPath"] = "/etc/alscale-config"
    (error,) = config_mount_errors(cluster, config_path, configmaps)
    assert "the head mounts no ConfigMap at /etc/alscale" in error and "/etc/alscale-config" in error
    renamed = copy.deepcopy(configmaps)
    renamed["alscale-select-config"]["data"] = {"config.toml": renamed["alscale-select-config"]["data"]["select.toml"]}
    (error,) = config_mount_errors(by_file["raycluster.yaml"], config_path, renamed)
    assert "has no key 'select.toml'" in error
    (error,) = config_mount_errors(by_file["rayjob.yaml"], config_path, {})
    assert "ConfigMap 'alscale-select-config' is not in k8s/" in error
