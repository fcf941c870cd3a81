output "cluster_name" {
  description = "EKS cluster name."
  value       = module.modelpilot.cluster_name
}

output "artifact_bucket_name" {
  description = "S3 bucket for MLflow artifacts."
  value       = module.modelpilot.artifact_bucket_name
}

output "database_endpoint" {
  description = "host:port of the prediction log's PostgreSQL."
  value       = module.modelpilot.database_endpoint
}

output "database_master_secret_arn" {
  description = "Secrets Manager secret with the database's rotated master credentials."
  value       = module.modelpilot.database_master_secret_arn
}

output "helm_values" {
  description = "Values for `helm install modelpilot charts/modelpilot -f -` on this cluster."
  value = yamlencode({
    serviceAccount = {
      annotations = { "eks.amazonaws.com/role-arn" = module.modelpilot.operator_role_arn }
    }
    operator = {
      image = { repository = module.modelpilot.ecr_repository_urls["modelpilot-operator"] }
    }
  })
}

output "ecr_repository_urls" {
  description = "Where CI pushes the images."
  value       = module.modelpilot.ecr_repository_urls
}

output "inference_role_arn" {
  description = "The serving pods' role: spec.serving.serviceAccount.annotations.\"eks.amazonaws.com/role-arn\" of the ModelDeployment."
  value       = module.modelpilot.inference_role_arn
}

output "training_role_arn" {
  description = "The training Jobs' role, on the ServiceAccount that spec.training.serviceAccountName names."
  value       = module.modelpilot.training_role_arn
}

output "training_service_account_manifest" {
  description = "The training ServiceAccounts, annotated with the training role: `terraform output -raw training_service_account_manifest | kubectl apply -f -`."
  value = join("---\n", [
    for sa in module.modelpilot.training_service_accounts : yamlencode({
      apiVersion = "v1"
      kind       = "ServiceAccount"
      metadata = {
        namespace   = split(":", sa)[0]
        name        = split(":", sa)[1]
        annotations = { "eks.amazonaws.com/role-arn" = module.modelpilot.training_role_arn }
      }
      automountServiceAccountToken = false
    })
  ])
}
