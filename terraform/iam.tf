################################################################################
# Host role: the functions get S3 credentials from the instance profile (AWS
# default chain), allowed on the store bucket only. SSM replaces SSH.
################################################################################

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
  description        = "movierec MicroK8s host: the store bucket and SSM, nothing else"
  assume_role_policy = data.aws_iam_policy_document.host_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "store_access" {
  statement {
    sid       = "ListStore"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.store.arn]
  }

  # Read, write and delete objects (ingest batches, snapshots, models, shards,
  # the CURRENT pointer). Nothing on bucket settings, policy or versions.
  statement {
    sid = "ReadWriteStoreObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.store.arn}/*"]
  }
}

resource "aws_iam_role_policy" "store_access" {
  name   = "store-access"
  role   = aws_iam_role.host.id
  policy = data.aws_iam_policy_document.store_access.json
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

  statement {
    sid     = "RunDeployOnHost"
    actions = ["ssm:SendCommand"]
    resources = [
      aws_instance.host.arn,
      "arn:aws:ssm:*::document/AWS-RunShellScript",
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
