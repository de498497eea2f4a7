#!/usr/bin/env bash
# CI's deploy: runs the host's deploy document (terraform output deploy_document_name) for
# one commit through SSM Run Command, waits for a final status and prints the output.
#   scripts/ssm-deploy.sh INSTANCE_ID DOCUMENT COMMIT
# Exits 0 only on Success; fails on any other final status, and after POLL_LIMIT polls
# (every POLL_SECONDS, 10 s by default: 15 minutes) without one.
set -euo pipefail

instance=${1:?usage: ssm-deploy.sh INSTANCE_ID DOCUMENT COMMIT}
document=${2:?usage: ssm-deploy.sh INSTANCE_ID DOCUMENT COMMIT}
commit=${3:?usage: ssm-deploy.sh INSTANCE_ID DOCUMENT COMMIT}
[[ $commit =~ ^[0-9a-f]{40}$ ]] || { echo "ssm-deploy.sh: '$commit' is not a full commit id" >&2; exit 1; }

command_id=$(aws ssm send-command --instance-ids "$instance" --document-name "$document" \
  --comment "movierec $commit" --parameters "commit=$commit" \
  --query Command.CommandId --output text)
echo "SSM command $command_id on $instance"

status=Pending
for ((poll = 0; poll < ${POLL_LIMIT:-90}; poll++)); do
  # Right after send-command the invocation may not exist yet: keep waiting.
  status=$(aws ssm get-command-invocation --command-id "$command_id" --instance-id "$instance" \
    --query Status --output text 2>/dev/null || echo Pending)
  case $status in
    Pending | InProgress | Delayed) sleep "${POLL_SECONDS:-10}" ;;
    *) break ;;
  esac
done

aws ssm get-command-invocation --command-id "$command_id" --instance-id "$instance" \
  --query '[StandardOutputContent, StandardErrorContent]' --output text || true
echo "final status: $status"
[[ $status == Success ]]
