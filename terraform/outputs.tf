output "cluster_name" {
  description = "Name of the EKS cluster (aws eks update-kubeconfig --name <this>)."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "Endpoint of the Kubernetes API."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = module.eks.cluster_certificate_authority_data
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's OIDC provider (IRSA)."
  value       = module.eks.oidc_provider_arn
}

output "gpu_node_taint" {
  description = "Taint of the GPU nodes; ModelDeployments tolerate it in serving/training.tolerations."
  value       = var.gpu_node_group.enabled ? "${local.gpu_taint.key}=${local.gpu_taint.value}:NoSchedule" : null
}

output "artifact_bucket_name" {
  description = "S3 bucket for MLflow artifacts (mlflow server --artifacts-destination s3://<this>) and training data."
  value       = aws_s3_bucket.artifacts.bucket
}

output "artifact_bucket_arn" {
  description = "ARN of the artifact bucket."
  value       = aws_s3_bucket.artifacts.arn
}

output "artifact_kms_key_arn" {
  description = "KMS key that encrypts the artifact bucket."
  value       = local.artifact_kms_key_arn
}

output "operator_role_arn" {
  description = "IRSA role of the operator (no S3 access); chart value serviceAccount.annotations.\"eks.amazonaws.com/role-arn\"."
  value       = aws_iam_role.service_account["operator"].arn
}

output "inference_role_arn" {
  description = "IRSA role of the serving pods (read the model artifacts); a ModelDeployment's spec.serving.serviceAccount.annotations.\"eks.amazonaws.com/role-arn\"."
  value       = aws_iam_role.service_account["inference"].arn
}

output "training_role_arn" {
  description = "IRSA role of the training Jobs (read and write artifacts); the eks.amazonaws.com/role-arn annotation of each training ServiceAccount."
  value       = aws_iam_role.service_account["training"].arn
}

output "serving_service_accounts" {
  description = "namespace:name of every ServiceAccount the inference role trusts (the operator makes them)."
  value       = local.serving_service_accounts
}

output "training_service_accounts" {
  description = "namespace:name of every ServiceAccount the training role trusts (create them, annotated with training_role_arn, and name them in spec.training.serviceAccountName)."
  value       = local.training_service_accounts
}

output "cluster_secrets_kms_key_arn" {
  description = "KMS key that envelope-encrypts the cluster's Secrets."
  value       = local.cluster_secrets_kms_key_arn
}

output "ecr_repository_urls" {
  description = "ECR repository URL per image name."
  value       = { for name, repository in aws_ecr_repository.images : name => repository.repository_url }
}

output "database_endpoint" {
  description = "host:port of the PostgreSQL instance (null without var.database.enabled); the DSN's address."
  value       = var.database.enabled ? aws_db_instance.database[0].endpoint : null
}

output "database_name" {
  description = "Database created on the instance."
  value       = var.database.enabled ? aws_db_instance.database[0].db_name : null
}

output "database_master_secret_arn" {
  description = "Secrets Manager secret with the master user's rotated credentials (username, password); read it to create the application's role, never hand it to pods."
  value       = var.database.enabled ? aws_db_instance.database[0].master_user_secret[0].secret_arn : null
}

output "database_security_group_id" {
  description = "Security group of the database (admits the cluster nodes on 5432)."
  value       = var.database.enabled ? aws_security_group.database[0].id : null
}
