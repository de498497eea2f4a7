################################################################################
# The store: one bucket, private, encrypted, versioned, TLS-only
################################################################################

resource "aws_s3_bucket" "store" {
  # checkov:skip=CKV_AWS_144:Cross-region replication doubles storage cost; every object but recs/CURRENT is immutable and versioned, and the event log can be re-ingested from Kafka.
  # checkov:skip=CKV_AWS_18:Server access logs need a second bucket (itself logged, encrypted, ...); use CloudTrail S3 data events for an audit trail.
  # checkov:skip=CKV2_AWS_62:Nothing consumes bucket events: recommend polls recs/CURRENT (SPEC §5).
  bucket        = var.bucket_name
  bucket_prefix = var.bucket_name == null ? "${var.name}-" : null
  force_destroy = var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_public_access_block" "store" {
  bucket                  = aws_s3_bucket.store.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "store" {
  bucket = aws_s3_bucket.store.id

  rule {
    object_ownership = "BucketOwnerEnforced" # no ACLs at all
  }
}

resource "aws_s3_bucket_versioning" "store" {
  bucket = aws_s3_bucket.store.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "store" {
  bucket = aws_s3_bucket.store.id

  rule {
    apply_server_side_encryption_by_default {
      # The AWS-managed key: no key to pay for or administer; the bucket key
      # keeps KMS request charges off the per-object path.
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

data "aws_iam_policy_document" "store" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.store.arn,
      "${aws_s3_bucket.store.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "store" {
  bucket = aws_s3_bucket.store.id
  policy = data.aws_iam_policy_document.store.json

  # A policy put before the public access block could be judged public and refused.
  depends_on = [aws_s3_bucket_public_access_block.store]
}

resource "aws_s3_bucket_lifecycle_configuration" "store" {
  bucket = aws_s3_bucket.store.id

  # Old recommendation runs: cheaper storage after a month (still instantly readable,
  # so `movierec rollback` keeps working), deleted after recs_expiration_days. Only the
  # shards (megabytes): recs/CURRENT, run.json and evaluations are a few KB and never
  # expire, so a CURRENT left unchanged for long is not deleted under recommend.
  rule {
    id     = "recs-runs"
    status = "Enabled"

    filter {
      and {
        prefix                   = "${var.store_prefix}/recs/"
        object_size_greater_than = 65536
      }
    }

    transition {
      days          = var.recs_ia_transition_days
      storage_class = "STANDARD_IA"
    }

    dynamic "expiration" {
      for_each = var.recs_expiration_days == null ? [] : [var.recs_expiration_days]
      content {
        days = expiration.value
      }
    }
  }

  # Versioning keeps every replaced recs/CURRENT and every deleted object; bound that.
  rule {
    id     = "noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.store]
}
