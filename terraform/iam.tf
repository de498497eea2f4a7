################################################################################
# Least privilege on one host without IRSA (threat model: terraform/README.md).
#
# The instance role may only assume the workloads' roles (and use SSM). Pods cannot
# reach IMDS (hop limit 1 in main.tf, and an egress NetworkPolicy in knative/): the host
# mints each workload an hour's credentials for its own role every 20 minutes
# (/usr/local/sbin/movierec-credentials, cloud-init) into the Secret
# movierec-aws-<workload>, which only that workload mounts.
################################################################################

locals {
  # Who may do what in the store, by key pattern under store_prefix (SPEC §4, read off
  # src/movierec and pipelines/): read = GetObject (HEAD too), write = PutObject
  # (If-None-Match too), delete = DeleteObject. Multipart uploads are never started.
  # tests/deploy/test_iam.py renders every policy and asserts the function x action x
  # prefix matrix.
  store_access = {
    # A batch of stream lines per request, written once (put_new); never reads or deletes.
    ingest = { read = [], write = ["events/*"], delete = [] }
    # Internet-facing: reads the published runs, the model's popular fallback, and the
    # snapshot manifests and quality reports its freshness metrics watch. Writes nothing.
    recommend = { read = ["recs/*", "models/*", "snapshots/*/manifest.json", "snapshots/*/quality.json"], write = [], delete = [] }
    # One partition: the run, the model, the snapshot's seen pairs in; one shard out.
    precompute = { read = ["recs/*", "models/*", "snapshots/*"], write = ["recs/*"], delete = [] }
    # Keeps what Knative could not deliver.
    deadletter = { read = [], write = ["deadletter/*"], delete = [] }
    # The nightly refresh job: snapshot, train, fan out, publish, and compact the event log,
    # whose superseded small files it alone may delete.
    refresh = { read = ["events/*", "snapshots/*", "models/*", "recs/*"], write = ["events/*", "snapshots/*", "models/*", "recs/*"], delete = ["events/*"] }
  }
}

data "aws_iam_policy_document" "host_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "host" {
  name_prefix        = "${var.name}-host-"
  description        = "movierec MicroK8s host: assume the workloads' roles, and SSM; nothing else"
  assume_role_policy = data.aws_iam_policy_document.host_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "host_mints_workload_credentials" {
  statement {
    sid       = "AssumeWorkloadRoles"
    actions   = ["sts:AssumeRole"]
    resources = [for role in aws_iam_role.workload : role.arn]
  }
}

resource "aws_iam_role_policy" "host_mints_workload_credentials" {
  name   = "assume-workload-roles"
  role   = aws_iam_role.host.id
  policy = data.aws_iam_policy_document.host_mints_workload_credentials.json
}

# Session Manager shell and Run Command (the CI deploy) instead of SSH.
resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.host.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "host" {
  name_prefix = "${var.name}-host-"
  role        = aws_iam_role.host.name
  tags        = local.tags
}

data "aws_iam_policy_document" "workload_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.host.arn]
    }
  }
}

resource "aws_iam_role" "workload" {
  for_each = local.store_access

  name_prefix          = substr("${var.name}-${each.key}-", 0, 38)
  description          = "movierec ${each.key}: its own prefixes of the store bucket, nothing else"
  assume_role_policy   = data.aws_iam_policy_document.workload_assume.json
  max_session_duration = 3600
  tags                 = local.tags
}

resource "aws_iam_role_policy" "workload_store" {
  for_each = local.store_access

  name = "store-access"
  role = aws_iam_role.workload[each.key].id
  policy = templatefile("${path.module}/templates/store-policy.json.tftpl", {
    bucket_arn = aws_s3_bucket.store.arn
    prefix     = var.store_prefix
    access     = each.value
  })
}

################################################################################
# Optional CI role: GitHub Actions on the main branch of one repository may run
# the host's deploy script through SSM, and nothing else.
################################################################################

data "aws_caller_identity" "current" {}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.github_repository != null && var.create_github_oidc_provider ? 1 : 0

  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  tags           = local.tags
}

data "aws_iam_policy_document" "ci_assume" {
  # checkov:skip=CKV_AWS_358:checkov cannot resolve the subject when the repository is a variable (null by default); the claim is StringEquals repo:<owner/name>:environment:production, with owner/name validated in variables.tf and asserted by tests/deploy/test_static.py.
  count = var.github_repository != null ? 1 : 0

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:oidc-provider/token.actions.githubusercontent.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    # The deploy job runs in the "production" environment of this repository only.
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = ["repo:${var.github_repository}:environment:production"]
    }
  }
}

resource "aws_iam_role" "ci" {
  count = var.github_repository != null ? 1 : 0

  name_prefix        = "${var.name}-ci-"
  description        = "GitHub Actions deploy of ${var.github_repository} to the movierec host through SSM"
  assume_role_policy = data.aws_iam_policy_document.ci_assume[0].json
  tags               = local.tags

  depends_on = [aws_iam_openid_connect_provider.github]
}

data "aws_iam_policy_document" "ci_deploy" {
  count = var.github_repository != null ? 1 : 0

  # Only the deploy document, whose one parameter must be a commit id: never a shell.
  statement {
    sid     = "RunDeployOnHost"
    actions = ["ssm:SendCommand"]
    resources = [
      aws_instance.host.arn,
      aws_ssm_document.deploy.arn,
    ]
  }

  statement {
    sid       = "ReadCommandResult"
    actions   = ["ssm:GetCommandInvocation", "ssm:ListCommandInvocations"]
    resources = ["*"] # these actions support no resource-level permissions
  }
}

resource "aws_iam_role_policy" "ci_deploy" {
  count = var.github_repository != null ? 1 : 0

  name   = "deploy-through-ssm"
  role   = aws_iam_role.ci[0].id
  policy = data.aws_iam_policy_document.ci_deploy[0].json
}

# What CI may run on the host: movierec-deploy of one commit, nothing else. The
# parameter's pattern (40 hex digits) leaves no room for shell syntax.
resource "aws_ssm_document" "deploy" {
  name            = "${var.name}-deploy"
  document_type   = "Command"
  document_format = "JSON"
  content         = file("${path.module}/templates/deploy-document.json")
  tags            = local.tags
}
