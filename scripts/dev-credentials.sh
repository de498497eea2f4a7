#!/usr/bin/env bash
# Makes the dev cluster's per-workload credentials Secrets (knative/components/store-credentials)
# from two dedicated AWS profiles, never from a developer's whole credentials file:
#   WRITER_PROFILE (default movierec-dev-writer): ingest, precompute, deadletter, refresh
#   READER_PROFILE (default movierec-dev-reader): recommend, which may only read
# Each profile is an access key scoped to the dev bucket (docs/deploy.md lists the policies).
# Each Secret holds one config file with one [default] profile, nothing else.
set -euo pipefail

kubectl=${KUBECTL:-microk8s kubectl}
writer=${WRITER_PROFILE:-movierec-dev-writer}
reader=${READER_PROFILE:-movierec-dev-reader}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

profile_config() {
  local key secret
  key=$(aws configure get aws_access_key_id --profile "$1") || { echo "profile $1 has no access key" >&2; exit 1; }
  secret=$(aws configure get aws_secret_access_key --profile "$1") || { echo "profile $1 has no secret key" >&2; exit 1; }
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key" "$secret"
}

$kubectl create namespace movierec --dry-run=client -o yaml | $kubectl apply -f - > /dev/null
for workload in ingest precompute deadletter refresh recommend; do
  profile=$writer
  [[ $workload == recommend ]] && profile=$reader
  profile_config "$profile" > "$dir/config"
  $kubectl -n movierec create secret generic "movierec-aws-$workload" --from-file=config="$dir/config" \
    --dry-run=client -o yaml | $kubectl apply -f - > /dev/null
  echo "movierec-aws-$workload: profile $profile"
done
