"""YAML-side helpers for tests/deploy, run with .tools/lint-venv/bin/python.

The repository's test environment need not have PyYAML, jsonschema or
kubernetes-validate; this script runs where they are and answers in JSON.

  validate SCHEMA_DIRS FILE...  kinds with a CRD schema in SCHEMA_DIRS (colon-separated: Knative,
                                Prometheus operator) against it, every other kind with
                                kubernetes-validate --strict; exit 1 on errors
  dump FILE                     all documents of FILE as one JSON list
  podviews FILE OUT             each Knative Service's pod template as a Deployment
                                (for scanners that only know core workload kinds)
  tf-interface DIR              variables/outputs/providers of a Terraform module, JSON
  cloud-init FILE OUT           write the files of a cloud-config into OUT, list them
  hcl FILE                      a Terraform file as JSON, string literals unquoted
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import yaml

KUBERNETES_VERSION = "1.34.0"  # the MicroK8s channel terraform/ installs (tests/deploy/test_versions.py)


def load_all(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def strict(schema: dict) -> dict:
    """Forbid unknown fields wherever the CRD does not preserve them, as the API
    server's strict field validation (kubectl --validate=strict) does."""
    schema = copy.deepcopy(schema)

    def walk(node: object) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if (
                isinstance(props, dict)
                and not node.get("x-kubernetes-preserve-unknown-fields")
                and "additionalProperties" not in node
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_schemas(schema_dirs: str) -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> strict openAPIV3Schema of every served version."""
    schemas = {}
    paths = sorted(p for d in schema_dirs.split(":") for p in Path(d).glob("*.yaml"))
    for path in paths:
        for crd in load_all(str(path)):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", False):
                    continue
                schema = strict(version["schema"]["openAPIV3Schema"])
                # Broker and Trigger leave the envelope to the API server.
                schema.setdefault("properties", {})
                for key in ("apiVersion", "kind"):
                    schema["properties"].setdefault(key, {"type": "string"})
                schema["properties"].setdefault("metadata", {"type": "object"})
                schemas[(group, version["name"], kind)] = schema
    return schemas


def validate(schema_dir: str, files: list[str]) -> int:
    import jsonschema
    import kubernetes_validate

    schemas = crd_schemas(schema_dir)
    knative_groups = {group for group, _, _ in schemas}
    errors, checked = [], 0
    for path in files:
        for doc in load_all(path):
            api = doc.get("apiVersion", "")
            group, _, version = api.rpartition("/")
            name = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if group in knative_groups or group.endswith(("knative.dev", "coreos.com")):
                schema = schemas.get((group, version, doc.get("kind")))
                if schema is None:
                    errors.append(f"{name}: no CRD schema for {api} {doc.get('kind')} in {schema_dir}")
                    continue
                validator = jsonschema.Draft4Validator(schema)
                for err in validator.iter_errors(doc):
                    where = "/".join(str(p) for p in err.absolute_path) or "(top)"
                    errors.append(f"{name}: {where}: {err.message}")
            else:
                try:
                    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                except kubernetes_validate.ValidationError as err:
                    where = "/".join(str(p) for p in err.path) or "(top)"
                    errors.append(f"{name}: {where}: {err.message}")
                except kubernetes_validate.SchemaNotFoundError as err:
                    errors.append(f"{name}: {err}")
            checked += 1
    for line in errors:
        print(line)
    print(f"validated {checked} object(s), {len(errors)} error(s)")
    return 1 if errors or checked == 0 else 0


def podviews(path: str, out: str) -> int:
    deployments = []
    for doc in load_all(path):
        if doc.get("kind") != "Service" or not doc["apiVersion"].startswith("serving.knative.dev/"):
            continue
        template = copy.deepcopy(doc["spec"]["template"])
        labels = dict(template.get("metadata", {}).get("labels") or {"app": doc["metadata"]["name"]})
        template.setdefault("metadata", {})["labels"] = labels
        spec = template["spec"]
        for knative_only in ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds"):
            spec.pop(knative_only, None)
        deployments.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": doc["metadata"]["name"],
                    "namespace": doc["metadata"].get("namespace"),
                    # Inline checkov skips (with their reasons) live on the Knative Service.
                    "annotations": {
                        k: v for k, v in (doc["metadata"].get("annotations") or {}).items() if k.startswith("checkov.io/")
                    },
                },
                "spec": {"selector": {"matchLabels": labels}, "template": template},
            }
        )
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(deployments, f, sort_keys=False)
    print(json.dumps(len(deployments)))
    return 0


def tf_interface(directory: str) -> int:
    import hcl2

    result: dict[str, object] = {"variables": {}, "outputs": {}, "providers": {}}
    for path in sorted(Path(directory).glob("*.tf")):
        with open(path, encoding="utf-8") as f:
            parsed = hcl2.load(f)
        for block in parsed.get("variable", []):
            for name, body in block.items():
                result["variables"][name.strip('"')] = {
                    "file": path.name,
                    "keys": sorted(k for k in body if not k.startswith("__")),
                }
        for block in parsed.get("output", []):
            for name, body in block.items():
                result["outputs"][name.strip('"')] = {
                    "file": path.name,
                    "keys": sorted(k for k in body if not k.startswith("__")),
                }
        for block in parsed.get("terraform", []):
            for providers in block.get("required_providers", []):
                for name, spec in providers.items():
                    result["providers"][name] = spec
    print(json.dumps(result, default=str))
    return 0


def cloud_init(path: str, out: str) -> int:
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("#cloud-config\n"):
        print(json.dumps({"error": "first line is not #cloud-config"}))
        return 1
    config = yaml.safe_load(text)
    written = []
    for entry in config.get("write_files", []):
        target = Path(out) / entry["path"].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entry["content"], encoding="utf-8")
        written.append({"path": entry["path"], "file": str(target), "permissions": entry.get("permissions")})
    print(json.dumps({"files": written, "runcmd": config.get("runcmd", [])}))
    return 0


def unquoted(node: object) -> object:
    if isinstance(node, dict):
        return {str(unquoted(k)): unquoted(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unquoted(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


def hcl(path: str) -> int:
    import hcl2

    with open(path, encoding="utf-8") as f:
        print(json.dumps(unquoted(hcl2.load(f)), default=str))
    return 0


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "validate":
        return validate(args[0], args[1:])
    if command == "dump":
        docs = [d for f in args for d in load_all(f)]
        print(json.dumps(docs))
        return 0
    if command == "podviews":
        return podviews(args[0], args[1])
    if command == "tf-interface":
        return tf_interface(args[0])
    if command == "cloud-init":
        return cloud_init(args[0], args[1])
    if command == "hcl":
        return hcl(args[0])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
