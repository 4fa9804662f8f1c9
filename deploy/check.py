#!/usr/bin/env python3
"""The structural checks of deploy/ that no schema makes, run by deploy/check.sh.

    check.py compose RESOLVED.yml   # the output of `docker-compose config`
    check.py k8s
    check.py systemd
    check.py docker
    check.py probes                 # prints the (role, port, path) of every HTTP probe

Every command line in the manifests is run through the real binary with `--help` appended
(clap parses every flag and value before it prints help, so a misspelt flag, a bad value or
an unknown subcommand fails); every ebroker.toml is loaded by `ebroker config show`; probes
must name ports the same container binds; memory limits must be at least twice the
configured budget; Secret values must be placeholders. Binaries come from $EBROKER_BIN_DIR.
Prints one line per check ("ok" or "FAIL ...") and exits 1 when any failed.
"""

import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
BIN = Path(os.environ.get("EBROKER_BIN_DIR", ROOT / "target" / "release"))
BINARIES = ("ebroker", "ebroker-scheduler", "ebroker-executor")
# The paths the HTTP probes may use: check.sh asks each of them of a running scheduler and
# executor (binaries of this build) and needs a 200.
PROBE_PATHS = {
    "ebroker-scheduler": {"/healthz", "/readyz", "/api/version"},
    "ebroker-executor": {"/healthz", "/readyz"},
}
# What the README says of the budget: "512MiB keeps a run under 1 GiB RSS".
LIMIT_OVER_BUDGET = 2
PLACEHOLDER = "CHANGE-ME"

failed = 0


def report(name, problems):
    global failed
    if problems:
        failed += 1
        print(f"FAIL {name}")
        for p in problems:
            print(f"       - {p}")
    else:
        print(f"ok   {name}")


# --- sizes ------------------------------------------------------------------------------

def ebroker_bytes(text):
    """engine.memory_limit and --memory-pool-size, as ebroker (and bytesize) read them."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(text))
    if not m:
        return None
    factor = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6,
              "mib": 1024**2, "g": 1e9, "gb": 1e9, "gib": 1024**3, "t": 1e12, "tb": 1e12,
              "tib": 1024**4}.get(m.group(2).lower())
    return None if factor is None else int(float(m.group(1)) * factor)


def k8s_bytes(text):
    m = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P|)", str(text))
    if not m:
        return None
    factor = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "Ki": 1024,
              "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5}[m.group(2)]
    return int(float(m.group(1)) * factor)


def binary_bytes(text):
    """Docker's mem_limit and systemd's MemoryMax=: K, M, G, T are powers of 1024."""
    m = re.fullmatch(r"([0-9.]+)\s*([bkmgtBKMGT]?)[bB]?", str(text).strip())
    if not m:
        return None
    return int(float(m.group(1)) * 1024 ** "bkmgt".index((m.group(2) or "b").lower()))


def mib(n):
    return f"{n / 1024**2:.0f} MiB"


# --- running the binaries -----------------------------------------------------------------

def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(extra or {})
    return env


def cli_problems(binary, args, where):
    """Runs `binary ARGS --help`: clap parses every flag and value before printing help."""
    exe = BIN / binary
    if binary not in BINARIES:
        return [f"{where}: {binary} is not one of the binaries the build makes ({', '.join(BINARIES)})"]
    if not os.access(exe, os.X_OK):
        return [f"{where}: {exe} is missing: build first (deploy/local/build.sh) or set EBROKER_BIN_DIR"]
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run([str(exe), *args, "--help"], cwd=cwd, env=clean_env(),
                           capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        first = next((line for line in r.stderr.splitlines() if line.strip()), "")
        return [f"{where}: `{binary} {' '.join(args)}` is refused by the binary: {first}"]
    return []


def config_problems(toml_path, env, where):
    """Loads an ebroker.toml with the real parser (`ebroker config show`), in the environment
    the deployment gives it; password files are pointed at a placeholder file."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / "secret"
        secret.write_text("placeholder\n")
        run_env = {}
        for k, v in env.items():
            run_env[k] = str(secret) if k.endswith("__PASSWORD_FILE") else str(v)
        r = subprocess.run([str(BIN / "ebroker"), f"--config={toml_path}", "config", "show"],
                           cwd=tmp, env=clean_env(run_env), capture_output=True, text=True,
                           timeout=60)
    if r.returncode != 0:
        problems.append(f"{where}: `ebroker config show` refuses {toml_path}: {r.stderr.strip()}")
    return problems


def load_toml(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def flag(args, name):
    """The value of --name=V or --name V (or a short alias) in an argument list."""
    names = name if isinstance(name, tuple) else (name,)
    for i, a in enumerate(args):
        for n in names:
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
            if a == n and i + 1 < len(args):
                return args[i + 1]
    return None


# Flags of each binary that name the ports it binds.
PORT_FLAGS = {
    "ebroker-scheduler": {"scheduler": (("--bind-port", "-p"), "50050")},
    "ebroker-executor": {
        "flight": (("--bind-port", "-p"), "50051"),
        "grpc": (("--bind-grpc-port",), "50052"),
        "health": (("--bind-health-port",), "50053"),
    },
}
HTTP_ROLE = {"ebroker-scheduler": "scheduler", "ebroker-executor": "health"}


def bound_ports(binary, args):
    def number(text):
        return int(text) if str(text).isdigit() else text  # a non-number fails the comparisons
    return {role: number(flag(args, names) or default)
            for role, (names, default) in PORT_FLAGS.get(binary, {}).items()}


def budget_problems(where, budget, limit_bytes, request_bytes=None):
    problems = []
    if limit_bytes is None:
        problems.append(f"{where}: no memory limit")
    elif limit_bytes < LIMIT_OVER_BUDGET * budget:
        problems.append(f"{where}: memory limit {mib(limit_bytes)} is under {LIMIT_OVER_BUDGET} x the "
                        f"budget ({mib(budget)}): the process needs memory beyond what the engine accounts")
    if request_bytes is not None and request_bytes < budget:
        problems.append(f"{where}: memory request {mib(request_bytes)} is under the budget {mib(budget)}")
    return problems


def pool_problems(where, args, budget):
    """The executor must keep ebroker's pool (engine.memory_limit): only --memory-pool-size=0
    does. Any other size, or none (70% of the host's or cgroup's memory), makes Ballista
    replace it with a plain pool of that size split across the vcores (checked: an executor
    with engine.memory_limit=64KiB and --memory-pool-size=0 fails a clean with "fair(pool_size:
    64.0 KB)"; with --memory-pool-size=1GiB the same clean succeeds)."""
    pool = flag(args, "--memory-pool-size")
    if pool is None:
        return [f"{where}: no --memory-pool-size: Ballista then gives tasks 70% of the host's or cgroup's "
                f"memory instead of engine.memory_limit ({mib(budget)}); pass --memory-pool-size=0"]
    if ebroker_bytes(pool) != 0:
        return [f"{where}: --memory-pool-size={pool} replaces engine.memory_limit ({mib(budget)}) with "
                f"Ballista's own pool; pass --memory-pool-size=0 to keep ebroker's"]
    return []


# --- compose ------------------------------------------------------------------------------

def compose(resolved_path):
    doc = yaml.safe_load(Path(resolved_path).read_text())
    services = doc.get("services", {})
    toml_host = DEPLOY / "compose" / "ebroker.toml"
    conf = load_toml(toml_host)
    budget = ebroker_bytes(conf["engine"]["memory_limit"])
    wh_root = conf["warehouse"]["root"]
    spill = conf["engine"]["spill_dir"]
    dockerfile_targets = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (DEPLOY / "docker" / "Dockerfile").read_text(), re.M | re.I))
    target_binary = {"scheduler": "ebroker-scheduler", "executor": "ebroker-executor", "ebroker": "ebroker"}

    ebroker_services = {}
    problems = []
    for name, svc in services.items():
        build = svc.get("build")
        if not build:
            continue
        target = build.get("target")
        if target not in dockerfile_targets:
            problems.append(f"{name}: build target {target!r} is not a stage of deploy/docker/Dockerfile ({sorted(dockerfile_targets)})")
            continue
        if target not in target_binary:
            problems.append(f"{name}: build target {target!r} is not an image of a binary")
            continue
        ebroker_services[name] = (target_binary[target], svc)
    if not ebroker_services:
        problems.append("no service is built from deploy/docker/Dockerfile")
    report("compose: every ebroker service builds a target of deploy/docker/Dockerfile", problems)

    problems = []
    for name, (binary, svc) in ebroker_services.items():
        args = svc.get("command") or []
        if isinstance(args, str):
            problems.append(f"{name}: command is a string; give it as a list (no shell in between)")
            continue
        problems += cli_problems(binary, args, name)
    report("compose: every ebroker command line is accepted by its binary (`... --help`)", problems)

    problems = []
    for name, (binary, svc) in ebroker_services.items():
        args = svc.get("command") or []
        ports = bound_ports(binary, args)
        exposed = {int(str(p).split("/")[0]) for p in svc.get("expose", [])}
        exposed |= {int(str(p.get("target") if isinstance(p, dict) else str(p).split(":")[-1]).split("/")[0]) for p in svc.get("ports", [])}
        for role, port in ports.items():
            if port not in exposed:
                problems.append(f"{name}: binds {role} port {port}, which it neither exposes nor publishes")
        hc = svc.get("healthcheck")
        if binary in PROBE_PATHS:
            if not hc:
                problems.append(f"{name}: no healthcheck")
                continue
            test = hc.get("test", [])
            if test[:2] != ["CMD", "http-probe"] or len(test) != 4:
                problems.append(f"{name}: healthcheck {test} is not [CMD, http-probe, PORT, PATH]")
                continue
            port, path = int(test[2]), test[3]
            if port != ports[HTTP_ROLE[binary]]:
                problems.append(f"{name}: healthcheck probes port {port}, but the {binary} serves HTTP on {ports[HTTP_ROLE[binary]]}")
            if path not in PROBE_PATHS[binary]:
                problems.append(f"{name}: healthcheck path {path} is not one the {binary} serves ({sorted(PROBE_PATHS[binary])})")
            if binary == "ebroker-scheduler" and path == "/readyz":
                problems.append(f"{name}: /readyz waits for an executor, and the executors wait for this healthcheck")
    report("compose: healthchecks probe the port and path the container serves; ports exposed", problems)

    problems = []
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            c = cond.get("condition") if isinstance(cond, dict) else None
            hc = services.get(dep, {}).get("healthcheck") or {}
            if c == "service_healthy" and (not hc.get("test") or hc.get("disable") or hc["test"][0] == "NONE"):
                problems.append(f"{name}: waits for {dep} to be healthy, which has no healthcheck")
    daily = [n for n, (b, _) in ebroker_services.items() if b == "ebroker"]
    for name in daily:
        deps = services[name].get("depends_on") or {}
        for other in services:
            if other != name and deps.get(other, {}).get("condition") != "service_healthy":
                problems.append(f"{name}: does not wait for {other} to be healthy")
    if not daily:
        problems.append("no one-shot ebroker service (the daily job)")
    for name in daily:
        if services[name].get("restart", "no") != "no":
            problems.append(f"{name}: a one-shot job needs restart: \"no\"")
    report("compose: depends_on waits for healthchecks; the daily job waits for every service", problems)

    problems = []
    for name, (binary, svc) in ebroker_services.items():
        vols = svc.get("volumes", [])
        targets = {}
        for v in vols:
            if isinstance(v, dict):
                targets[v["target"]] = v
            else:
                parts = str(v).split(":")
                targets[parts[1]] = {"source": parts[0], "target": parts[1], "read_only": parts[2:] == ["ro"], "type": "bind" if parts[0].startswith(("/", ".")) else "volume"}
        wd = svc.get("working_dir")
        cfg = targets.get(f"{wd}/ebroker.toml")
        if not cfg or Path(cfg["source"]).resolve() != toml_host.resolve():
            problems.append(f"{name}: deploy/compose/ebroker.toml is not mounted at its working directory ({wd}/ebroker.toml)")
        wh = targets.get(wh_root)
        if not wh or wh.get("source") != "warehouse" or wh.get("read_only"):
            problems.append(f"{name}: the volume `warehouse` is not mounted read-write at warehouse.root ({wh_root})")
        writable = set(svc.get("tmpfs", [])) | {t for t, v in targets.items() if not v.get("read_only")}

        def covered(path):
            return any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable)
        if svc.get("read_only"):
            for need, why in ((spill, "engine.spill_dir"), ("/tmp", "/tmp")):
                if not covered(need):
                    problems.append(f"{name}: {why} ({need}) is not writable on its read-only root file system")
            work = flag(svc.get("command") or [], "--work-dir")
            if binary == "ebroker-executor" and (not work or not covered(work)):
                problems.append(f"{name}: --work-dir ({work}) is not a volume or tmpfs")
        if binary == "ebroker-executor":
            problems += pool_problems(name, svc.get("command") or [], budget)
        if binary in ("ebroker-executor", "ebroker"):
            problems += budget_problems(name, budget, binary_bytes(svc.get("mem_limit")) if svc.get("mem_limit") else None)
        env = svc.get("environment") or {}
        problems += config_problems(toml_host, env, name)
        for k, v in env.items():
            if k.endswith("__PASSWORD_FILE"):
                secret = Path(v).name
                if v != f"/run/secrets/{secret}" or secret not in [s if isinstance(s, str) else s.get("source") for s in svc.get("secrets", [])]:
                    problems.append(f"{name}: {k}={v} is not a secret the service mounts")
    report("compose: config, warehouse, spill and work mounts; memory limits >= 2 x engine.memory_limit, kept by the executors (--memory-pool-size=0); ebroker.toml loads", problems)

    problems = []
    ignore = DEPLOY / "compose" / ".gitignore"
    if not ignore.exists() or "secrets/" not in ignore.read_text().split():
        problems.append("deploy/compose/.gitignore does not ignore secrets/")
    tracked = git_ls(DEPLOY / "compose" / "secrets")
    if tracked:
        problems.append(f"secret files are committed: {tracked}")
    for name, s in (doc.get("secrets") or {}).items():
        if not str(s.get("file", "")).startswith(str((DEPLOY / "compose" / "secrets").resolve())):
            problems.append(f"secret {name} is not a file under deploy/compose/secrets/")
    report("compose: secrets are files under deploy/compose/secrets/, which git ignores", problems)


def git_ls(path):
    r = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--", str(path)], capture_output=True, text=True)
    return r.stdout.split() if r.returncode == 0 else []


# --- Kubernetes ---------------------------------------------------------------------------

def k8s_docs():
    docs = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                docs.append((f.name, d))
    return docs


def pod_specs(docs):
    """(workload name, pod template metadata, pod spec) of every workload."""
    for fname, d in docs:
        kind = d["kind"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            t = d["spec"]["template"]
        elif kind == "CronJob":
            t = d["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        yield f"{kind}/{d['metadata']['name']}", t.get("metadata", {}), t["spec"], d


def image_binary(image):
    name = image.rsplit("/", 1)[-1].split(":")[0].split("@")[0]
    return name if name in BINARIES else None


def expand(args, env):
    values = {"POD_IP": "10.0.0.7", "POD_NAME": "ebroker-executor-5d9f7-abcde"}
    values.update({e["name"]: e["value"] for e in env if "value" in e})
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: values.get(m.group(1), m.group(0)), a) for a in args]


def k8s():
    docs = k8s_docs()
    by_kind = {}
    for fname, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    # kustomization lists every manifest, and its images are the ones the pods use.
    problems = []
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {f.name for f in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    if set(kust.get("resources", [])) != files:
        problems.append(f"kustomization.yaml resources {sorted(kust.get('resources', []))} != the manifests {sorted(files)}")
    images = {c["image"].rsplit(":", 1)[0] for _, _, spec, _ in pod_specs(docs) for c in spec["containers"]}
    listed = {i["name"] for i in kust.get("images", [])}
    if images != listed:
        problems.append(f"kustomization.yaml images {sorted(listed)} != the pods' images {sorted(images)}")
    report("k8s: kustomization.yaml lists every manifest and image", problems)

    cms = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    cm = cms.get("ebroker-config")
    conf = tomllib.loads(cm["data"]["ebroker.toml"]) if cm else {}
    budget = ebroker_bytes(conf.get("engine", {}).get("memory_limit", "512MiB"))
    wh_root = conf.get("warehouse", {}).get("root", "./warehouse")
    spill = conf.get("engine", {}).get("spill_dir", "")
    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    services = by_kind.get("Service", [])

    containers = []
    for workload, meta, spec, d in pod_specs(docs):
        for c in spec["containers"]:
            binary = image_binary(c["image"])
            if binary:
                containers.append((workload, meta, spec, c, binary))
    if {b for *_, b in containers} != set(BINARIES):
        report("k8s: a workload for each binary", [f"the workloads run {sorted({b for *_, b in containers})}, not all of {BINARIES}"])

    problems = []
    for workload, meta, spec, c, binary in containers:
        if c.get("command"):
            problems.append(f"{workload}: sets command, replacing the image's entrypoint; give args only")
        args = expand(c.get("args", []), c.get("env", []))
        problems += cli_problems(binary, args, workload)
        if binary == "ebroker" and "--resume" not in args and "run" in args:
            problems.append(f"{workload}: `run` without --resume repeats the stages a failed attempt finished")
    report("k8s: every container's args are accepted by its binary (`... --help`)", problems)

    problems = []
    for workload, meta, spec, c, binary in containers:
        args = expand(c.get("args", []), c.get("env", []))
        declared = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        bound = bound_ports(binary, args)
        for role, port in bound.items():
            if declared.get(role) != port:
                problems.append(f"{workload}: binds {role} port {port}, but declares {role}: {declared.get(role)}")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.get(kind)
            if binary in PROBE_PATHS and kind in ("livenessProbe", "readinessProbe") and not probe:
                problems.append(f"{workload}: no {kind}")
            if not probe:
                continue
            if "grpc" in probe:
                problems.append(f"{workload}: {kind} is a grpc probe; the health endpoints are plain HTTP")
                continue
            if "httpGet" not in probe:
                problems.append(f"{workload}: {kind} is not an httpGet probe")
                continue
            port = probe["httpGet"]["port"]
            number = declared.get(port) if isinstance(port, str) else port
            if number is None or number not in declared.values():
                problems.append(f"{workload}: {kind} probes port {port!r}, which the container does not declare")
            elif binary in HTTP_ROLE and number != bound[HTTP_ROLE[binary]]:
                problems.append(f"{workload}: {kind} probes port {number}, but HTTP is served on {bound[HTTP_ROLE[binary]]}")
            path = probe["httpGet"].get("path", "/")
            if path not in PROBE_PATHS.get(binary, set()):
                problems.append(f"{workload}: {kind} path {path} is not one the {binary} serves ({sorted(PROBE_PATHS.get(binary, []))})")
            if kind == "livenessProbe" and path == "/readyz":
                problems.append(f"{workload}: liveness on /readyz restarts a process that only lost its scheduler")
            if binary == "ebroker-scheduler" and kind == "readinessProbe" and path == "/readyz":
                for s in services:
                    if selects(s, meta) and not s["spec"].get("publishNotReadyAddresses"):
                        problems.append(f"{workload}: readiness on /readyz needs a registered executor, which registers through "
                                        f"Service {s['metadata']['name']}, which holds only ready pods: neither starts")
    report("k8s: probes are httpGet on ports the container declares and binds, on paths it serves", problems)

    problems = []
    for s in services:
        matched = [(w, c, b) for w, meta, _, c, b in containers if selects(s, meta)]
        if not matched:
            problems.append(f"Service {s['metadata']['name']} selects no ebroker pod")
        for port in s["spec"]["ports"]:
            tp = port.get("targetPort", port["port"])
            for w, c, b in matched:
                names = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                if (tp not in names) if isinstance(tp, str) else (tp not in names.values()):
                    problems.append(f"Service {s['metadata']['name']}: targetPort {tp} is not a port of {w}")
    sched_svcs = {s["metadata"]["name"]: s for s in services
                  if any(selects(s, meta) and b == "ebroker-scheduler" for _, meta, _, _, b in containers)}
    for workload, meta, spec, c, binary in containers:
        args = expand(c.get("args", []), c.get("env", []))
        if binary == "ebroker-executor":
            target = (flag(args, "--scheduler-host") or "localhost", int(flag(args, "--scheduler-port") or 50050))
        elif binary == "ebroker":
            url = {e["name"]: e.get("value") for e in c.get("env", [])}.get("EBROKER_CLUSTER__URL") or flag(args, "--cluster") or conf.get("cluster", {}).get("url")
            m = re.fullmatch(r"df://([^:/]+):(\d+)", url or "")
            if not m:
                problems.append(f"{workload}: no cluster URL (EBROKER_CLUSTER__URL, --cluster or cluster.url): it would run in-process")
                continue
            target = (m.group(1), int(m.group(2)))
        else:
            continue
        svc = sched_svcs.get(target[0].split(".")[0])
        if not svc or target[1] not in [p["port"] for p in svc["spec"]["ports"]]:
            problems.append(f"{workload}: reaches the scheduler at {target[0]}:{target[1]}, which is no port of a scheduler Service ({sorted(sched_svcs)})")
    report("k8s: Services select the pods and ports; executors and the job reach the scheduler's Service", problems)

    problems = []
    if not cm:
        problems.append("no ConfigMap ebroker-config with ebroker.toml")
    for workload, meta, spec, c, binary in containers:
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        wd = c.get("workingDir")
        cfgm = mounts.get(f"{wd}/ebroker.toml")
        cfgv = vols.get(cfgm["name"]) if cfgm else None
        if not cfgv or cfgv.get("configMap", {}).get("name") != "ebroker-config" or cfgm.get("subPath") != "ebroker.toml":
            problems.append(f"{workload}: ebroker.toml of ConfigMap ebroker-config is not mounted at its workingDir ({wd}/ebroker.toml)")
        whm = mounts.get(wh_root)
        if not whm or "persistentVolumeClaim" not in vols.get(whm["name"], {}) or whm.get("readOnly"):
            problems.append(f"{workload}: no read-write warehouse volume at warehouse.root ({wh_root})")
        writable = {p for p, m in mounts.items() if not m.get("readOnly") and "configMap" not in vols.get(m["name"], {}) and "secret" not in vols.get(m["name"], {})}

        def covered(path):
            return any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable)
        if c.get("securityContext", {}).get("readOnlyRootFilesystem"):
            for need, why in ((spill, "engine.spill_dir"), ("/tmp", "/tmp")):
                if need and not covered(need):
                    problems.append(f"{workload}: {why} ({need}) is not a volume on its read-only root file system")
            work = flag(c.get("args", []), "--work-dir")
            if binary == "ebroker-executor" and (not work or not covered(work)):
                problems.append(f"{workload}: --work-dir ({work}) is not a volume")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        for k, v in env.items():
            if not k.endswith("__PASSWORD_FILE"):
                continue
            parent = str(Path(v).parent)
            m = mounts.get(parent)
            sv = vols.get(m["name"], {}).get("secret") if m else None
            if not sv:
                problems.append(f"{workload}: {k}={v} is not in a mounted Secret")
            elif Path(v).name not in secrets.get(sv["secretName"], {}).get("stringData", {}):
                problems.append(f"{workload}: {k}={v}: Secret {sv['secretName']} has no key {Path(v).name}")
        if cm:
            with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
                f.write(cm["data"]["ebroker.toml"])
                f.flush()
                problems += config_problems(f.name, {k: v for k, v in env.items() if k.startswith("EBROKER_")}, workload)
    report("k8s: ConfigMap, warehouse, spill, work and secret mounts; ebroker.toml loads in each container's environment", problems)

    problems = []
    for workload, meta, spec, c, binary in containers:
        res = c.get("resources", {})
        limit = res.get("limits", {}).get("memory")
        request = res.get("requests", {}).get("memory")
        if binary == "ebroker-executor":
            problems += pool_problems(workload, c.get("args", []), budget)
        if binary in ("ebroker-executor", "ebroker"):
            problems += budget_problems(workload, budget, k8s_bytes(limit) if limit else None,
                                        k8s_bytes(request) if request else 0)
        elif not limit:
            problems.append(f"{workload}: no memory limit")
    report(f"k8s: memory limits >= {LIMIT_OVER_BUDGET} x engine.memory_limit, requests >= it; executors keep that pool (--memory-pool-size=0)", problems)

    problems = []
    for s in secrets.values():
        if s.get("data"):
            problems.append(f"Secret {s['metadata']['name']}: has base64 `data`; use stringData with {PLACEHOLDER} placeholders")
        for k, v in (s.get("stringData") or {}).items():
            if v != PLACEHOLDER:
                problems.append(f"Secret {s['metadata']['name']}: {k} is not the placeholder {PLACEHOLDER}: never commit a real value")
    if not secrets:
        problems.append("no Secret")
    report(f"k8s: Secret values are the placeholder {PLACEHOLDER}", problems)

    problems = []
    for cj in by_kind.get("CronJob", []):
        if cj["spec"].get("concurrencyPolicy") != "Forbid":
            problems.append(f"CronJob {cj['metadata']['name']}: concurrencyPolicy is not Forbid (one writer per date)")
        if not cj["spec"].get("timeZone"):
            problems.append(f"CronJob {cj['metadata']['name']}: no timeZone: the run's date (UTC) would follow the controller's zone")
    if not by_kind.get("CronJob"):
        problems.append("no CronJob")
    report("k8s: the CronJob forbids concurrent runs and fixes its time zone", problems)


def selects(service, pod_meta):
    sel = service["spec"].get("selector") or {}
    labels = pod_meta.get("labels") or {}
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


# --- systemd ------------------------------------------------------------------------------

def unit_sections(path):
    """{section: [(key, value)]}, continuation lines joined."""
    sections, current, pending = {}, None, ""
    for raw in Path(path).read_text().splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
        elif "=" in line:
            k, v = line.split("=", 1)
            sections[current].append((k.strip(), v.strip()))
    return sections


def values(sections, section, key):
    return [v for k, v in sections.get(section, []) if k == key]


def systemd():
    d = DEPLOY / "systemd"
    conf_path = d / "ebroker.toml"
    conf = load_toml(conf_path)
    budget = ebroker_bytes(conf["engine"]["memory_limit"])
    wh_root = conf["warehouse"]["root"]
    spill = conf["engine"]["spill_dir"]
    sysusers = (d / "sysusers-ebroker.conf").read_text()
    users = set(re.findall(r"^u\s+(\S+)", sysusers, re.M))
    spec = {"%H": "node-1.example.internal", "%i": "ebroker", "%d": "/run/credentials/ebroker-daily@ebroker.service", "%%": "%"}

    units = sorted(d.glob("*.service"))
    cmd_problems, sandbox_problems, budget_p = [], [], []
    for u in units:
        s = unit_sections(u)
        name = u.name
        execs = values(s, "Service", "ExecStart")
        if len(execs) != 1:
            cmd_problems.append(f"{name}: {len(execs)} ExecStart= lines")
            continue
        words = execs[0].split()
        for k, v in spec.items():
            words = [w.replace(k, v) for w in words]
        exe, args = words[0], words[1:]
        if not exe.startswith("/usr/local/bin/"):
            cmd_problems.append(f"{name}: ExecStart runs {exe}, not a binary installed in /usr/local/bin")
        binary = Path(exe).name
        cmd_problems += cli_problems(binary, args, name)
        env = {}
        for e in values(s, "Service", "Environment"):
            k, v = e.split("=", 1)
            for a, b in spec.items():
                v = v.replace(a, b)
            env[k] = v
        if binary == "ebroker":
            cfg = flag(args, "--config")
            if cfg != "/etc/ebroker/ebroker.toml" and not (cfg or "").startswith("/etc/ebroker/"):
                cmd_problems.append(f"{name}: --config={cfg} is not under /etc/ebroker")
        wd = (values(s, "Service", "WorkingDirectory") or [None])[0]
        if binary != "ebroker" and wd != "/etc/ebroker":
            cmd_problems.append(f"{name}: WorkingDirectory={wd}: the {binary} reads ./ebroker.toml, installed in /etc/ebroker")
        cmd_problems += config_problems(conf_path, {k: v for k, v in env.items() if k.startswith("EBROKER_")}, name)
        for k, v in env.items():
            if k.endswith("__PASSWORD_FILE"):
                creds = [c.split(":", 1)[0] for c in values(s, "Service", "LoadCredential")]
                if not v.startswith(spec["%d"] + "/") or Path(v).name not in creds:
                    cmd_problems.append(f"{name}: {k}={v} is not a LoadCredential= of the unit")

        user = (values(s, "Service", "User") or [None])[0]
        if user not in users:
            sandbox_problems.append(f"{name}: User={user} is not created by sysusers-ebroker.conf ({sorted(users)})")
        for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
            if values(s, "Service", key)[-1:] != [want]:  # the last assignment wins
                sandbox_problems.append(f"{name}: {key}={want} is missing")
        rw = " ".join(values(s, "Service", "ReadWritePaths")).split()
        if wh_root not in rw:
            sandbox_problems.append(f"{name}: warehouse.root ({wh_root}) is not in ReadWritePaths= (ProtectSystem=strict makes it read-only)")
        if wh_root not in " ".join(values(s, "Unit", "RequiresMountsFor")).split():
            sandbox_problems.append(f"{name}: no RequiresMountsFor={wh_root}")
        state = {"/var/lib/" + p for p in " ".join(values(s, "Service", "StateDirectory")).split()}
        if spill not in state:
            sandbox_problems.append(f"{name}: engine.spill_dir ({spill}) is not a StateDirectory= (read-only under ProtectSystem=strict)")
        work = flag(args, "--work-dir")
        if binary == "ebroker-executor" and work not in state:
            sandbox_problems.append(f"{name}: --work-dir ({work}) is not a StateDirectory=")
        if values(s, "Service", "Type") != ["oneshot"] and values(s, "Service", "Restart") != ["on-failure"]:
            sandbox_problems.append(f"{name}: a long-running service without Restart=on-failure")
        mem = values(s, "Service", "MemoryMax")
        if binary == "ebroker-executor":
            budget_p += pool_problems(name, args, budget)
        if binary in ("ebroker-executor", "ebroker"):
            budget_p += budget_problems(name, budget, binary_bytes(mem[0]) if mem else None)
        elif not mem:
            budget_p.append(f"{name}: no MemoryMax=")
    report("systemd: every ExecStart is accepted by its binary (`... --help`); ebroker.toml loads in each unit's environment", cmd_problems)
    report("systemd: User= from sysusers; sandbox; warehouse, spill and work dirs writable; Restart=on-failure", sandbox_problems)
    report(f"systemd: MemoryMax >= {LIMIT_OVER_BUDGET} x engine.memory_limit; the executor keeps that pool (--memory-pool-size=0)", budget_p)

    problems = []
    timers = sorted(d.glob("*.timer"))
    for t in timers:
        s = unit_sections(t)
        target = (values(s, "Timer", "Unit") or [t.stem + ".service"])[0]
        m = re.fullmatch(r"(.+@)(.+)(\.service)", target)
        template = d / (m.group(1) + m.group(3)) if m else d / target
        if not template.exists():
            problems.append(f"{t.name}: starts {target}, which deploy/systemd/ does not hold")
        elif m:
            exec_line = values(unit_sections(template), "Service", "ExecStart")[0]
            if "%i.toml" in exec_line and not (d / f"{m.group(2)}.toml").exists():
                problems.append(f"{t.name}: starts {target}, whose configuration /etc/ebroker/{m.group(2)}.toml is not deploy/systemd/{m.group(2)}.toml")
        if not values(s, "Timer", "OnCalendar"):
            problems.append(f"{t.name}: no OnCalendar=")
    if not timers:
        problems.append("no timer")
    report("systemd: the timer starts a unit (and configuration) that exists", problems)


# --- Dockerfile ---------------------------------------------------------------------------

def docker():
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    stages = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            current = m.group(2) or m.group(1)
            stages[current] = {"from": m.group(1), "lines": []}
        elif current:
            stages[current]["lines"].append(line)
    body = {k: "\n".join(v["lines"]) for k, v in stages.items()}

    problems = []
    build = [k for k, b in body.items() if "cargo build --release" in b]
    if not build:
        problems.append("no stage runs `cargo build --release`")
    runtime = stages.get("runtime")
    if not runtime or runtime["from"] != "debian:12-slim":
        problems.append("the runtime stage is not FROM debian:12-slim")
    user = re.search(r"^USER\s+(\S+)", body.get("runtime", ""), re.M)
    if not user or user.group(1).split(":")[0] in ("0", "root") or not user.group(1).split(":")[0].isdigit():
        problems.append("the runtime stage does not switch to a numeric non-root USER")
    for target, binary in (("scheduler", "ebroker-scheduler"), ("executor", "ebroker-executor"), ("ebroker", "ebroker")):
        st = stages.get(target)
        if not st or st["from"] != "runtime":
            problems.append(f"no target {target} FROM runtime")
            continue
        if f'ENTRYPOINT ["/usr/local/bin/{binary}"]' not in body[target]:
            problems.append(f"target {target}: ENTRYPOINT is not /usr/local/bin/{binary}")
        if f"/out/{binary} /usr/local/bin/{binary}" not in body[target]:
            problems.append(f"target {target}: does not copy {binary} from the build")
        cmd = re.search(r"^CMD\s+(\[.*\])", body[target], re.M)
        if cmd:
            problems += cli_problems(binary, yaml.safe_load(cmd.group(1)), f"target {target} CMD")
        exposed = {int(p) for p in " ".join(re.findall(r"^EXPOSE\s+(.*)$", body[target], re.M)).split()}
        default_ports = set(bound_ports(binary, []).values())
        if default_ports - exposed:
            problems.append(f"target {target}: does not EXPOSE {sorted(default_ports - exposed)}")
    report("docker: cargo build --release; debian:12-slim; non-root USER; a target per binary with its entrypoint, CMD and ports", problems)

    # Every shared library the binaries link must come from a package the runtime installs.
    problems = []
    install = re.search(r"apt-get install[^&]*", body.get("runtime", ""), re.S)
    installed = set(install.group(0).replace("\\", " ").split()) if install else set()
    for binary in BINARIES:
        r = subprocess.run(["ldd", str(BIN / binary)], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"ldd {binary}: {r.stderr.strip()}")
            continue
        for line in r.stdout.splitlines():
            if "not found" in line:
                problems.append(f"{binary}: {line.strip()}")
            m = re.search(r"=>\s+(/\S+)", line)
            if not m:
                continue
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(m.group(1))], capture_output=True, text=True)
            if owner.returncode != 0:
                owner = subprocess.run(["dpkg", "-S", m.group(1)], capture_output=True, text=True)
            pkg = owner.stdout.split(":")[0] if owner.returncode == 0 else None
            if pkg is None:
                problems.append(f"{binary}: links {m.group(1)}, which no Debian package owns here")
            elif pkg != "libc6" and pkg not in installed:
                problems.append(f"{binary}: links {Path(m.group(1)).name} (Debian package {pkg}), which the runtime stage does not install")
    report("docker: the runtime installs the package of every library `ldd` shows (libc6 aside)", problems)

    problems = []
    probe = DEPLOY / "docker" / "http-probe"
    if "COPY deploy/docker/http-probe /usr/local/bin/http-probe" not in body.get("runtime", ""):
        problems.append("the runtime stage does not install http-probe, which the compose healthchecks run")
    if not os.access(probe, os.X_OK):
        problems.append("deploy/docker/http-probe is not executable")
    r = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-s", "--", str(probe)], capture_output=True, text=True)
    if r.returncode == 0 and r.stdout and not r.stdout.startswith("100755"):
        problems.append("deploy/docker/http-probe is committed without its executable bit")
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore")
    if not ignore.exists() or "target" not in ignore.read_text().split():
        problems.append("Dockerfile.dockerignore does not keep ./target out of the build context")
    report("docker: http-probe is installed and executable; target/ stays out of the context", problems)


def probes():
    """(binary, path) of every HTTP probe in compose, k8s and check.py's own list, for
    check.sh's live test."""
    for binary, paths in PROBE_PATHS.items():
        for p in sorted(paths):
            print(binary, p)


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    checks = {"compose": lambda: compose(sys.argv[2]), "k8s": k8s, "systemd": systemd,
              "docker": docker, "probes": probes}
    if what not in checks:
        sys.exit(__doc__)
    try:
        checks[what]()
    except Exception as e:  # a manifest shaped unlike what the checks expect fails too
        import traceback
        traceback.print_exc()
        report(f"{what}: the checks could not read the manifests ({type(e).__name__}: {e})", ["see the traceback above"])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
