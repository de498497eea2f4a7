#!/usr/bin/env bash
# Brings up movierec on a one-machine MicroK8s (docs/deploy.md, "A cluster on one machine"):
# Knative at the same versions as the AWS host, its local registry, a real single-node
# Kafka with the stream's topic, the credentials Secrets, then knative/overlays/dev.
# Build and push the images first (docs/deploy.md). Needs MicroK8s 1.34 or newer.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The releases terraform/variables.tf installs on the AWS host (tests/deploy checks they agree).
knative_version=1.23.0
# Images pushed to the MicroK8s registry addon; Knative's controller resolves tags to digests
# from inside its pod, where localhost:32000 is not the node's registry: skip resolving there.
local_registries=localhost:32000
release=knative-v$knative_version
gh=https://github.com
k() { microk8s kubectl "$@"; }
wait_ns() { k wait --for=condition=Available deployment --all -n "$1" --timeout=15m; }

microk8s status --wait-ready > /dev/null
microk8s enable dns registry

k apply -f "$gh/knative/serving/releases/download/$release/serving-crds.yaml"
k wait --for=condition=Established crd --all --timeout=5m
k apply -f "$gh/knative/serving/releases/download/$release/serving-core.yaml"
k apply -f "$gh/knative-extensions/net-kourier/releases/download/$release/kourier.yaml"
wait_ns knative-serving
wait_ns kourier-system
k -n knative-serving patch configmap/config-network --type merge \
  -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
k -n knative-serving patch configmap/config-domain --type merge -p '{"data":{"127.0.0.1.sslip.io":""}}'
k -n knative-serving patch configmap/config-features --type merge \
  -p '{"data":{"kubernetes.podspec-volumes-emptydir":"enabled"}}'
k -n knative-serving patch configmap/config-deployment --type merge \
  -p "{\"data\":{\"registries-skipping-tag-resolving\":\"kind.local,ko.local,dev.local,$local_registries\"}}"

k apply -f "$gh/knative/eventing/releases/download/$release/eventing-crds.yaml"
k wait --for=condition=Established crd --all --timeout=5m
k apply -f "$gh/knative/eventing/releases/download/$release/eventing-core.yaml"
k apply -f "$gh/knative/eventing/releases/download/$release/in-memory-channel.yaml"
k apply -f "$gh/knative/eventing/releases/download/$release/mt-channel-broker.yaml"
wait_ns knative-eventing
k -n knative-eventing patch configmap/config-features --type merge -p '{"data":{"delivery-timeout":"enabled"}}'
k apply -f "$gh/knative-extensions/eventing-kafka-broker/releases/download/$release/eventing-kafka-controller.yaml"
k apply -f "$gh/knative-extensions/eventing-kafka-broker/releases/download/$release/eventing-kafka-source.yaml"
k wait --for=condition=Established crd --all --timeout=5m
wait_ns knative-eventing

# Kafka, then the topic (the Job retries until the broker answers).
k apply -k "$root/knative/dev-kafka"
k -n kafka rollout status statefulset/kafka --timeout=10m
k -n kafka wait --for=condition=Complete job/create-topic --timeout=10m

KUBECTL="microk8s kubectl" "$root/scripts/dev-credentials.sh"
k apply -k "$root/knative/overlays/dev"
k -n movierec get ksvc,kafkasource
