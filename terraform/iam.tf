# IAM roles for ServiceAccounts (IRSA), least privilege per component:
# - operator: no S3 at all (it talks to the Kubernetes API and MLflow only); the role exists so that any
#   AWS access it is ever given is explicit and auditable,
# - inference: read the model artifacts (below var.model_artifact_prefix) and nothing else,
# - training: read and write the artifact bucket (data in, models and reports out).
# Each role trusts exactly the ServiceAccounts named here (StringEquals, no wildcards): the operator's, the
# two the operator makes for each ModelDeployment's tracks, and each ModelDeployment's training account.

locals {
  oidc_provider = module.eks.oidc_provider

  # The operator names a track's ServiceAccount <ModelDeployment>-<track> (builders/serving.py).
  serving_service_accounts = flatten([
    for md in var.model_deployments : [for track in ["stable", "canary"] : "${md.namespace}:${md.name}-${track}"]
  ])
  training_service_accounts = [
    for md in var.model_deployments : "${md.namespace}:${coalesce(md.training_service_account, "${md.name}-training")}"
  ]

  service_account_subjects = {
    operator  = ["system:serviceaccount:${var.operator_service_account}"]
    inference = [for sa in local.serving_service_accounts : "system:serviceaccount:${sa}"]
    training  = [for sa in local.training_service_accounts : "system:serviceaccount:${sa}"]
  }

  model_artifacts_arn = "${aws_s3_bucket.artifacts.arn}/${var.model_artifact_prefix}"
}

data "aws_iam_policy_document" "assume_from_service_accounts" {
  for_each = local.service_account_subjects

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_provider}:sub"
      values   = each.value
    }
  }
}

resource "aws_iam_role" "service_account" {
  for_each = local.service_account_subjects

  name                 = "${var.name}-${each.key}"
  description          = "modelpilot ${each.key} pods in cluster ${var.name} (IRSA)"
  assume_role_policy   = data.aws_iam_policy_document.assume_from_service_accounts[each.key].json
  max_session_duration = 3600
  tags                 = local.tags
}

# The serving pods: list and read the model artifacts, nothing else of the bucket.
data "aws_iam_policy_document" "read_model_artifacts" {
  statement {
    sid       = "ListModelArtifacts"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.model_artifact_prefix}*"]
    }
  }

  statement {
    sid       = "ReadModelArtifacts"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.model_artifacts_arn}*"]
  }

  statement {
    sid       = "DecryptArtifacts"
    actions   = ["kms:Decrypt"]
    resources = [local.artifact_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.current.region}.amazonaws.com"]
    }
  }
}

# Training: the whole bucket (data anywhere in it, models and reports out).
data "aws_iam_policy_document" "read_artifacts" {
  statement {
    sid       = "ListArtifacts"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.artifacts.arn]
  }

  statement {
    sid       = "ReadArtifacts"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }

  statement {
    sid       = "DecryptArtifacts"
    actions   = ["kms:Decrypt"]
    resources = [local.artifact_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.current.region}.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "write_artifacts" {
  source_policy_documents = [data.aws_iam_policy_document.read_artifacts.json]

  statement {
    sid       = "WriteArtifacts"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }

  statement {
    sid       = "EncryptArtifacts"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt"]
    resources = [local.artifact_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.current.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "read_model_artifacts" {
  name        = "${var.name}-read-model-artifacts"
  description = "Read the model artifacts in the modelpilot artifact bucket"
  policy      = data.aws_iam_policy_document.read_model_artifacts.json
  tags        = local.tags
}

resource "aws_iam_policy" "write_artifacts" {
  name        = "${var.name}-write-artifacts"
  description = "Read and write the modelpilot artifact bucket"
  policy      = data.aws_iam_policy_document.write_artifacts.json
  tags        = local.tags
}

resource "aws_iam_role_policy_attachment" "inference_reads_model_artifacts" {
  role       = aws_iam_role.service_account["inference"].name
  policy_arn = aws_iam_policy.read_model_artifacts.arn
}

resource "aws_iam_role_policy_attachment" "training_writes_artifacts" {
  role       = aws_iam_role.service_account["training"].name
  policy_arn = aws_iam_policy.write_artifacts.arn
}
