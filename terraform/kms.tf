# KMS keys of the stack: the cluster's secrets key here, the artifact bucket's in s3.tf. Either can be
# brought instead (cluster_secrets_kms_key_arn, artifact_bucket_kms_key_arn).

locals {
  cluster_secrets_kms_key_arn = var.cluster_secrets_kms_key_arn != null ? var.cluster_secrets_kms_key_arn : aws_kms_key.cluster_secrets[0].arn
}

# The account administers its keys; the EKS cluster role and the roles in iam.tf are granted use of them by
# IAM policies (the module attaches the cluster role's). In a key policy "*" means this key, and
# root-account administration is AWS's default key policy.
data "aws_iam_policy_document" "key_administered_by_account" {
  #checkov:skip=CKV_AWS_109:key policy; "*" is the key itself and the principal is the account
  #checkov:skip=CKV_AWS_111:key policy; "*" is the key itself and the principal is the account
  #checkov:skip=CKV_AWS_356:key policy; "*" is the key itself and the principal is the account
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

# Envelope encryption of Kubernetes Secrets in etcd.
resource "aws_kms_key" "cluster_secrets" {
  count = var.cluster_secrets_kms_key_arn == null ? 1 : 0

  description             = "modelpilot ${var.name}: EKS secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key_administered_by_account.json
  tags                    = local.tags
}

resource "aws_kms_alias" "cluster_secrets" {
  count = var.cluster_secrets_kms_key_arn == null ? 1 : 0

  name          = "alias/${var.name}-eks-secrets"
  target_key_id = aws_kms_key.cluster_secrets[0].key_id
}
