#!/usr/bin/env bash
# Installs (or upgrades to) the monitoring stack on the host: kube-prometheus-stack at a
# pinned chart version with monitoring/kube-prometheus-stack.values.yaml, in the namespace
# "monitoring". Its operator loads movierec's PodMonitor and PrometheusRule, its Grafana
# the dashboard ConfigMap (all three applied by knative/overlays/aws). Run by
# /usr/local/bin/movierec-deploy before every deploy (the CRDs must exist first).
# HELM overrides the helm command (the host has `microk8s helm`).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
chart_version=69.2.3
helm=${HELM:-microk8s helm}
$helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update > /dev/null
$helm upgrade --install kps prometheus-community/kube-prometheus-stack --version "$chart_version" \
  --namespace monitoring --create-namespace \
  --values "$root/monitoring/kube-prometheus-stack.values.yaml" --wait --timeout 15m
