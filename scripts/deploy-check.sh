#!/usr/bin/env bash
# Checks the deployment files without a cluster:
#   - deploy/k8s: every overlay renders (`kubectl kustomize`); every rendered object validates
#     against the Kubernetes 1.30 schemas, strictly (an unknown field fails, and so does a
#     kind without a schema), with kubernetes-validate (PyPI, schemas shipped in the package);
#     deploy/k8s/invariants.py checks what an operator relies on (probes, requests and limits,
#     non-root with a read-only root file system, chat a StatefulSet behind a headless
#     Service, Service selectors and probe ports that exist, drain timing; in prod the HPAs,
#     PodDisruptionBudgets, NetworkPolicies and anti-affinity).
#   - deploy/prometheus: `promtool check config` of both scrape configurations, `promtool
#     check rules` and `promtool test rules` of the alert rules.
#   - deploy/grafana: every dashboard is JSON with the fields Grafana needs, and its queries
#     are PromQL that promtool accepts.
# Which metric names the rules and the dashboard use is checked against live /metrics by the
# Rust test crates/strata/tests/cli/metrics_names.rs (part of the test command).
#
# Installs what is missing: kubernetes-validate (a pinned version) into a virtualenv at
# ${XDG_CACHE_HOME:-$HOME/.cache}/strata/kubernetes-validate, and promtool from Debian's
# `prometheus` package. kubectl must be installed (it renders kustomize offline). Any tool
# that is missing and cannot be installed fails the run. Developers and `.ci/run` use this
# same script.
set -euo pipefail
cd "$(dirname "$0")/.."

KV_VERSION=1.37.0
K8S_VERSION=1.30.0
venv="${XDG_CACHE_HOME:-$HOME/.cache}/strata/kubernetes-validate"

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'deploy-check: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

command -v kubectl >/dev/null || fail "kubectl is missing (it renders the kustomize overlays)"

if [ -x "$venv/bin/kubernetes-validate" ] && [ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" = "$KV_VERSION" ]; then
  :
else
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    log "installing python3-venv"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  log "installing kubernetes-validate $KV_VERSION into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi
python="$venv/bin/python"

if ! command -v promtool >/dev/null; then
  log "installing promtool (Debian's prometheus package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq prometheus >/dev/null
  command -v promtool >/dev/null || fail "promtool is missing after installing prometheus"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Kubernetes: render, validate, check the invariants.
overlays=(deploy/k8s/overlays/*/)
[ "${#overlays[@]}" -ge 2 ] || fail "expected the dev and prod overlays under deploy/k8s/overlays"
for dir in "${overlays[@]}"; do
  overlay=$(basename "$dir")
  rendered="$work/$overlay.yaml"
  log "k8s $overlay: kubectl kustomize"
  kubectl kustomize "$dir" >"$rendered"
  log "k8s $overlay: kubernetes-validate $K8S_VERSION --strict"
  # A kind without a schema is only a warning there: here it fails too.
  report=$("$venv/bin/kubernetes-validate" -k "$K8S_VERSION" --strict --quiet "$rendered" 2>&1) \
    || { printf '%s\n' "$report" >&2; fail "$overlay: objects fail the Kubernetes $K8S_VERSION schemas"; }
  if [ -n "$report" ]; then
    printf '%s\n' "$report" >&2
    fail "$overlay: kubernetes-validate warned"
  fi
  count=$(grep -c '^kind:' "$rendered")
  log "k8s $overlay: $count objects valid"
  flags=()
  [ "$overlay" = prod ] && flags+=(--production)
  "$python" deploy/k8s/invariants.py "${flags[@]}" "$rendered"
done

# The validator is strict: an object with an unknown field must fail (or the checks above
# prove nothing).
printf 'apiVersion: v1\nkind: Service\nmetadata:\n  name: probe\nspec:\n  bogus: 1\n  ports: [{port: 80}]\n' >"$work/unknown-field.yaml"
if "$venv/bin/kubernetes-validate" -k "$K8S_VERSION" --strict --quiet "$work/unknown-field.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate accepted an unknown field"
fi

# Prometheus. Debian's promtool is built without Kubernetes service discovery, so
# kubernetes.yml is checked as a copy whose `kubernetes_sd_configs` become static targets,
# after its discovery blocks are checked against the fields Prometheus documents.
log "promtool check config deploy/prometheus/compose.yml"
promtool check config deploy/prometheus/compose.yml
log "promtool check config deploy/prometheus/kubernetes.yml (discovery checked apart)"
cp deploy/prometheus/rules.yml "$work/rules.yml"
"$python" - deploy/prometheus/kubernetes.yml "$work/kubernetes.yml" <<'EOF'
import sys
import yaml

ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
KEYS = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata",
        "basic_auth", "authorization", "oauth2", "tls_config", "proxy_url", "follow_redirects",
        "enable_http2", "bearer_token", "bearer_token_file", "no_proxy", "proxy_from_environment",
        "proxy_connect_header"}
source, target = sys.argv[1:]
with open(source, encoding="utf-8") as file:
    config = yaml.safe_load(file)
for job in config["scrape_configs"]:
    sds = job.pop("kubernetes_sd_configs", None)
    if sds is None:
        continue
    for sd in sds:
        unknown = set(sd) - KEYS
        if unknown or sd.get("role") not in ROLES:
            sys.exit(f"{source}: job {job['job_name']}: bad kubernetes_sd_configs {sd}")
        namespaces = sd.get("namespaces", {})
        if set(namespaces) - {"names", "own_namespace"} or not all(isinstance(n, str) for n in namespaces.get("names", [])):
            sys.exit(f"{source}: job {job['job_name']}: bad namespaces {namespaces}")
    job["static_configs"] = [{"targets": ["discovered:9090"]}]
with open(target, "w", encoding="utf-8") as file:
    yaml.safe_dump(config, file)
EOF
promtool check config "$work/kubernetes.yml"
log "promtool check rules, test rules"
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules.test.yml

# Grafana: each dashboard parses, has what an import needs, and every query is PromQL that
# promtool accepts (each written as a recording rule, Grafana's variables replaced).
dashboards=(deploy/grafana/*.json)
[ -e "${dashboards[0]}" ] || fail "no dashboard in deploy/grafana"
for dashboard in "${dashboards[@]}"; do
  log "grafana $dashboard"
  "$python" - "$dashboard" "$work/dashboard-queries.yml" <<'EOF'
import json
import sys

import yaml

path, queries = sys.argv[1:]
with open(path, encoding="utf-8") as file:
    dashboard = json.load(file)
for key in ("title", "uid", "panels", "schemaVersion", "templating"):
    if key not in dashboard:
        sys.exit(f"{path}: no {key}")
ids = [p["id"] for p in dashboard["panels"]]
if len(ids) != len(set(ids)):
    sys.exit(f"{path}: panel ids repeat")
variables = {"$__rate_interval": "5m", "$pool": ".+", "${datasource}": ""}
rules = []
for panel in dashboard["panels"]:
    if panel["type"] == "row":
        continue
    if not panel.get("targets"):
        sys.exit(f"{path}: panel {panel['title']!r} has no query")
    for target in panel["targets"]:
        expr = target["expr"]
        for name, value in variables.items():
            expr = expr.replace(name, value)
        if "$" in expr:
            sys.exit(f"{path}: panel {panel['title']!r}: unknown variable in {target['expr']}")
        rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr})
with open(queries, "w", encoding="utf-8") as file:
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, file)
print(f"{path}: {len(ids)} panels, {len(rules)} queries")
EOF
  promtool check rules "$work/dashboard-queries.yml" >/dev/null \
    || { promtool check rules "$work/dashboard-queries.yml" >&2; fail "$dashboard: a query is not valid PromQL"; }
done
log "deploy files: all checks passed"
