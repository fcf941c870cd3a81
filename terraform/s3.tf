# The artifact bucket: MLflow artifacts (models, plots, model cards) and training data. Private, encrypted
# with KMS, versioned (an overwritten model can be recovered), TLS only.

locals {
  artifact_bucket_name = var.artifact_bucket_name != "" ? var.artifact_bucket_name : "${var.name}-artifacts-${data.aws_caller_identity.current.account_id}"
  artifact_kms_key_arn = var.artifact_bucket_kms_key_arn != null ? var.artifact_bucket_kms_key_arn : aws_kms_key.artifacts[0].arn
}

resource "aws_kms_key" "artifacts" {
  count = var.artifact_bucket_kms_key_arn == null ? 1 : 0

  description             = "modelpilot ${var.name}: artifact bucket"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key_administered_by_account.json
  tags                    = local.tags
}

resource "aws_kms_alias" "artifacts" {
  count = var.artifact_bucket_kms_key_arn == null ? 1 : 0

  name          = "alias/${var.name}-artifacts"
  target_key_id = aws_kms_key.artifacts[0].key_id
}

resource "aws_s3_bucket" "artifacts" {
  bucket        = local.artifact_bucket_name
  force_destroy = var.artifact_bucket_force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_logging" "artifacts" {
  count = var.artifact_access_log_bucket != "" ? 1 : 0

  bucket        = aws_s3_bucket.artifacts.id
  target_bucket = var.artifact_access_log_bucket
  target_prefix = "s3/${local.artifact_bucket_name}/"
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.artifact_kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.artifact_noncurrent_version_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

data "aws_iam_policy_document" "artifacts_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]

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

  statement {
    sid       = "DenyOutdatedTLS"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}
