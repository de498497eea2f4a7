#!/usr/bin/env bash
# Renders knative/overlays/aws for one host and one image tag, and prints it.
#   IMAGE_REGISTRY=ghcr.io/owner STORE_URI=s3://bucket/prefix AWS_REGION=eu-west-1 \
#   KAFKA_TOPIC=movielog1 KAFKA_BOOTSTRAP_SERVERS=host:9092[,host:9092] [KAFKA_AUTH=true] \
#   scripts/render-aws.sh sha-<commit> > rendered.yaml
# The overlay does not render without the component this writes into
# knative/overlays/aws/host/ (the host's settings, the four image pins, the alert rules as a
# PrometheusRule), so `kubectl apply -k knative/overlays/aws` alone fails before anything
# reaches a cluster. What it renders is checked: no placeholder left, and every image is
# $IMAGE_REGISTRY/movierec-<function>:<tag>. Run by /usr/local/bin/movierec-deploy on the
# host and by CI. KUBECTL overrides the kubectl command (the host has `microk8s kubectl`).
set -euo pipefail

tag=${1:?usage: render-aws.sh IMAGE_TAG}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
overlay="$root/knative/overlays/aws"
host="$overlay/host"
functions="recommend ingest precompute deadletter"

fail() { echo "render-aws.sh: $*" >&2; exit 1; }
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || fail "image tag '$tag' is not a valid tag"
[[ ${IMAGE_REGISTRY:-} =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$ ]] || fail "IMAGE_REGISTRY '${IMAGE_REGISTRY:-}' is not registry/namespace"
[[ ${STORE_URI:-} =~ ^s3://[a-z0-9][a-z0-9.-]+[a-z0-9](/.*)?$ ]] || fail "STORE_URI '${STORE_URI:-}' is not s3://bucket/prefix"
[[ ${AWS_REGION:-} =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]] || fail "AWS_REGION '${AWS_REGION:-}' is not a region"
[[ ${KAFKA_TOPIC:-} =~ ^movielog[0-9]+$ ]] || fail "KAFKA_TOPIC '${KAFKA_TOPIC:-}' is not movielog<N>"
[[ ${KAFKA_BOOTSTRAP_SERVERS:-} =~ ^[A-Za-z0-9.-]+:[0-9]{1,5}(,[A-Za-z0-9.-]+:[0-9]{1,5})*$ ]] \
  || fail "KAFKA_BOOTSTRAP_SERVERS '${KAFKA_BOOTSTRAP_SERVERS:-}' is not host:port[,host:port]"
kafka_auth=${KAFKA_AUTH:-false}
[[ $kafka_auth == true || $kafka_auth == false ]] || fail "KAFKA_AUTH must be true or false"

rm -rf "$host"
mkdir -p "$host"
printf 'MOVIEREC_STORE=%s\nAWS_REGION=%s\n' "$STORE_URI" "$AWS_REGION" > "$host/settings.env"
printf 'topic=%s\nbootstrapServers=%s\n' "$KAFKA_TOPIC" "$KAFKA_BOOTSTRAP_SERVERS" > "$host/kafka.env"
# monitoring/alerts.yaml is the one source of the rules (promtool tests it); the operator
# reads them as a PrometheusRule, whose spec is that file indented once.
{
  printf 'apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n'
  printf '  name: movierec\n  labels:\n    app.kubernetes.io/part-of: movierec\nspec:\n'
  sed -e 's/^\(.\)/  \1/' "$root/monitoring/alerts.yaml"
} > "$host/prometheusrule.yaml"
{
  echo "# Written by scripts/render-aws.sh for one host; never committed."
  echo "apiVersion: kustomize.config.k8s.io/v1alpha1"
  echo "kind: Component"
  echo "resources: [prometheusrule.yaml]"
  if [[ $kafka_auth == true ]]; then
    echo "components: [../../../components/kafka-auth]"
  fi
  echo "configMapGenerator:"
  echo "  - {name: movierec-config, behavior: merge, envs: [settings.env]}"
  echo "  - {name: movierec-kafka, behavior: merge, envs: [kafka.env]}"
  echo "images:"
  for fn in $functions; do
    echo "  - {name: movierec-$fn, newName: $IMAGE_REGISTRY/movierec-$fn, newTag: $tag}"
  done
} > "$host/kustomization.yaml"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
${KUBECTL:-kubectl} kustomize "$overlay" > "$out"

if grep -n -e 'CHANGE-ME' -e 'set-by-overlay' "$out" >&2; then
  fail "placeholders left in the rendered overlay (above)"
fi
pinned="image: $IMAGE_REGISTRY/movierec-($(tr ' ' '|' <<< "$functions")):$tag"
unpinned=$(grep -E '^ +(- )?image: ' "$out" | grep -vE "^ +(- )?$pinned$" || true)
[[ -z $unpinned ]] || fail "images not pinned to $IMAGE_REGISTRY/movierec-<function>:$tag: $unpinned"
for fn in $functions; do
  grep -qE "^ +(- )?image: $IMAGE_REGISTRY/movierec-$fn:$tag$" "$out" || fail "movierec-$fn is not deployed"
done
cat "$out"
