#!/usr/bin/env python3
"""The invariants an operator relies on, checked on a rendered overlay (`kubectl kustomize`).

    invariants.py [--production] RENDERED.yaml

Every container has a startup, liveness and readiness probe, CPU and memory requests and
limits, runs as a non-root user with a read-only root file system and no privilege
escalation, and every port a probe names exists in its container. Every Service selects the
pods of a workload, and every port it targets exists there. chat is a StatefulSet behind a
headless Service, api has a headless Service too, and the gateway's pools (the ConfigMap's
strata.toml) name those Services and their ports; the gateway is reached through a
LoadBalancer. api and chat pods are given time to drain: preStop, then strata's drain delay
and stop. Secret keys the pods read exist where the Secret is rendered. With --production:
HPAs for api and worker, a PodDisruptionBudget and anti-affinity for every role, a
default-deny NetworkPolicy and one for every role.

Prints each broken invariant and exits 1 if there is one; needs PyYAML (kubernetes-validate
brings it) and Python 3.11 (tomllib).
"""

import sys
import tomllib
from urllib.parse import urlsplit

import yaml

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
ROLES = {"gateway": "Deployment", "api": "Deployment", "chat": "StatefulSet", "worker": "Deployment"}
# strata's own stop after its drain delay: in-flight requests finish, chat clients are told to
# reconnect, within this many seconds (SHUTDOWN_DEADLINE in crates/strata/src/main.rs).
SHUTDOWN_DEADLINE_SECS = 10


class Checks:
    def __init__(self):
        self.failures = []
        self.count = 0

    def expect(self, ok, message):
        self.count += 1
        if not ok:
            self.failures.append(message)
        return ok


def name(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def namespace(obj):
    return obj["metadata"].get("namespace", "")


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"].get("labels", {})


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def role_of(workload):
    labels = workload["metadata"].get("labels", {})
    if labels.get("app.kubernetes.io/part-of") == "strata":
        return labels.get("app.kubernetes.io/component")
    return None


def effective(container, spec, key):
    """A securityContext field of the container, or else of the pod."""
    value = (container.get("securityContext") or {}).get(key)
    if value is None:
        value = (spec.get("securityContext") or {}).get(key)
    return value


def probe_port(probe):
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            return probe[handler].get("port")
    return None


def check_container(checks, where, container, spec):
    ports = container.get("ports") or []
    names = {p.get("name") for p in ports if p.get("name")}
    numbers = {p["containerPort"] for p in ports}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(kind)
        if not checks.expect(probe is not None, f"{where}: no {kind}"):
            continue
        port = probe_port(probe)
        if port is None:
            checks.expect("exec" in probe, f"{where}: {kind} has no handler")
        elif isinstance(port, str):
            checks.expect(port in names, f"{where}: {kind} names port {port!r}, not among {sorted(names)}")
        else:
            checks.expect(port in numbers, f"{where}: {kind} uses port {port}, not among {sorted(numbers)}")
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            checks.expect(
                resource in (resources.get(part) or {}), f"{where}: no {resource} in resources.{part}"
            )
    checks.expect(effective(container, spec, "runAsNonRoot") is True, f"{where}: not runAsNonRoot")
    checks.expect(effective(container, spec, "runAsUser") != 0, f"{where}: runAsUser 0")
    context = container.get("securityContext") or {}
    checks.expect(
        context.get("readOnlyRootFilesystem") is True, f"{where}: root file system not read-only"
    )
    checks.expect(
        context.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation allowed"
    )


def strata_config(objects):
    for obj in objects:
        if obj["kind"] == "ConfigMap" and "strata.toml" in obj.get("data", {}):
            return obj, tomllib.loads(obj["data"]["strata.toml"])
    return None, None


def check(objects, production):
    checks = Checks()
    workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
    services = [o for o in objects if o["kind"] == "Service"]
    roles = {role_of(w): w for w in workloads if role_of(w)}

    for workload in workloads:
        spec = pod_spec(workload)
        for container in spec.get("containers", []):
            check_container(checks, f"{name(workload)} container {container['name']}", container, spec)
        for container in spec.get("initContainers", []) or []:
            where = f"{name(workload)} init container {container['name']}"
            checks.expect(effective(container, spec, "runAsNonRoot") is True, f"{where}: not runAsNonRoot")
            checks.expect(
                (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is True,
                f"{where}: root file system not read-only",
            )

    # Every Service selects a workload's pods, in its namespace, and targets ports they have.
    for service in services:
        selector = service["spec"].get("selector")
        matched = [
            w
            for w in workloads
            if namespace(w) == namespace(service) and selects(selector, pod_labels(w))
        ]
        if not checks.expect(matched, f"{name(service)}: selector {selector} matches no workload"):
            continue
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for w in matched:
                containers = pod_spec(w)["containers"]
                if isinstance(target, str):
                    found = any(p.get("name") == target for c in containers for p in c.get("ports") or [])
                else:
                    found = any(p["containerPort"] == target for c in containers for p in c.get("ports") or [])
                checks.expect(found, f"{name(service)}: target port {target!r} not in {name(w)}")

    # The roles, each of its kind; chat and api behind headless Services.
    for role, kind in ROLES.items():
        workload = roles.get(role)
        if not checks.expect(workload is not None, f"no workload of role {role}"):
            continue
        checks.expect(workload["kind"] == kind, f"{name(workload)}: role {role} must be a {kind}")

    def headless_for(workload):
        return [
            s
            for s in services
            if s["spec"].get("clusterIP") == "None"
            and namespace(s) == namespace(workload)
            and selects(s["spec"].get("selector"), pod_labels(workload))
        ]

    chat = roles.get("chat")
    if chat is not None and chat["kind"] == "StatefulSet":
        governing = [s for s in headless_for(chat) if s["metadata"]["name"] == chat["spec"].get("serviceName")]
        checks.expect(governing, f"{name(chat)}: serviceName is not a headless Service selecting its pods")
    if "api" in roles:
        checks.expect(headless_for(roles["api"]), "api: no headless Service selecting its pods")
    if "gateway" in roles:
        public = [
            s
            for s in services
            if s["spec"].get("type") == "LoadBalancer" and selects(s["spec"].get("selector"), pod_labels(roles["gateway"]))
        ]
        checks.expect(public, "gateway: no LoadBalancer Service selecting its pods")

    # The gateway's pools name the headless Services of their roles, with their ports.
    config_map, config = strata_config(objects)
    if checks.expect(config is not None, "no ConfigMap with strata.toml"):
        pools = {p["name"]: p.get("instances", []) for p in config.get("gateway", {}).get("pools", [])}
        for pool in ("api", "chat"):
            urls = pools.get(pool, [])
            checks.expect(urls, f"strata.toml: no instances in gateway pool {pool}")
            workload = roles.get(pool)
            for url in urls:
                parts = urlsplit(url)
                found = [
                    s
                    for s in (headless_for(workload) if workload else [])
                    if s["metadata"]["name"] == parts.hostname
                    and any(p["port"] == parts.port for p in s["spec"].get("ports", []))
                ]
                checks.expect(found, f"strata.toml: pool {pool} instance {url} is not a headless Service of {pool} with that port")
        # Every pod that mounts the configuration points STRATA_CONFIG at it.
        for role, workload in roles.items():
            spec = pod_spec(workload)
            mounted = [v for v in spec.get("volumes", []) if (v.get("configMap") or {}).get("name") == config_map["metadata"]["name"]]
            checks.expect(mounted, f"{name(workload)}: does not mount {name(config_map)}")
            for container in spec["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                path = env.get("STRATA_CONFIG", "")
                mounts = [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in {v["name"] for v in mounted}]
                checks.expect(
                    any(path == f"{m.rstrip('/')}/strata.toml" for m in mounts),
                    f"{name(workload)}: STRATA_CONFIG {path!r} is not the mounted strata.toml",
                )

        # A terminating api or chat pod drains through the gateway: preStop (the gateway
        # re-resolves the headless Service), then the drain delay with /readyz 503, then the
        # stop, all within the grace period.
        for role in ("api", "chat"):
            workload = roles.get(role)
            if workload is None:
                continue
            spec = pod_spec(workload)
            grace = spec.get("terminationGracePeriodSeconds", 30)
            container = spec["containers"][0]
            sleep = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds")
            if not checks.expect(sleep is not None, f"{name(workload)}: no preStop sleep"):
                continue
            refresh = config.get("gateway", {}).get("dns_refresh_ms", 5000) / 1000
            checks.expect(
                sleep >= refresh,
                f"{name(workload)}: preStop {sleep} s is shorter than the gateway's DNS refresh {refresh} s",
            )
            delay = config.get(role, {}).get("drain_delay_ms", 2000) / 1000
            needed = sleep + delay + SHUTDOWN_DEADLINE_SECS
            checks.expect(
                grace >= needed,
                f"{name(workload)}: terminationGracePeriodSeconds {grace} < preStop {sleep} + drain {delay} + stop {SHUTDOWN_DEADLINE_SECS}",
            )

    # Secret keys the pods read exist in the Secret, where the overlay renders it.
    secrets = {
        (namespace(s), s["metadata"]["name"]): set((s.get("data") or {}).keys()) | set((s.get("stringData") or {}).keys())
        for s in objects
        if s["kind"] == "Secret"
    }
    for workload in workloads:
        for container in pod_spec(workload)["containers"]:
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if not ref or ref.get("optional"):
                    continue
                keys = secrets.get((namespace(workload), ref["name"]))
                if keys is not None:
                    checks.expect(ref["key"] in keys, f"{name(workload)}: Secret {ref['name']} has no key {ref['key']}")

    if production:
        check_production(checks, objects, roles)
    return checks


def check_production(checks, objects, roles):
    hpas = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    for role in ("api", "worker"):
        workload = roles.get(role)
        if workload is None:
            continue
        targets = [
            h for h in hpas
            if h["spec"]["scaleTargetRef"]["kind"] == workload["kind"]
            and h["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]
        ]
        if checks.expect(targets, f"{name(workload)}: no HorizontalPodAutoscaler"):
            metrics = targets[0]["spec"].get("metrics", [])
            checks.expect(
                any(m.get("resource", {}).get("name") == "cpu" for m in metrics),
                f"{name(targets[0])}: does not scale on CPU",
            )
            checks.expect("replicas" not in workload["spec"], f"{name(workload)}: sets replicas, which its HPA owns")
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        checks.expect(
            any(o["kind"] == ref["kind"] and o["metadata"]["name"] == ref["name"] for o in objects),
            f"{name(hpa)}: targets {ref['kind']}/{ref['name']}, which does not exist",
        )
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for role, workload in roles.items():
        labels = pod_labels(workload)
        checks.expect(
            any(selects(p["spec"]["selector"].get("matchLabels"), labels) for p in pdbs),
            f"{name(workload)}: no PodDisruptionBudget",
        )
        checks.expect(
            any(selects(p["spec"]["podSelector"].get("matchLabels"), labels) for p in policies),
            f"{name(workload)}: no NetworkPolicy of its own",
        )
        anti = (pod_spec(workload).get("affinity") or {}).get("podAntiAffinity")
        checks.expect(anti is not None, f"{name(workload)}: no pod anti-affinity")
    for pdb in pdbs:
        checks.expect(
            any(selects(pdb["spec"]["selector"].get("matchLabels"), pod_labels(w)) for w in roles.values()),
            f"{name(pdb)}: selects no workload",
        )
    deny = [
        p for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    checks.expect(deny, "no default-deny NetworkPolicy (ingress and egress)")


def main(argv):
    production = "--production" in argv
    paths = [a for a in argv if a != "--production"]
    if len(paths) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(paths[0], encoding="utf-8") as file:
        objects = [o for o in yaml.safe_load_all(file) if o]
    checks = check(objects, production)
    for failure in checks.failures:
        print(f"FAIL {paths[0]}: {failure}")
    passed = checks.count - len(checks.failures)
    print(f"{paths[0]}: {len(objects)} objects, {passed} passed, {len(checks.failures)} failed")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
