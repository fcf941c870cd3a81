output "cluster_name" {
  description = "EKS cluster name."
  value       = module.modelpilot.cluster_name
}

output "artifact_bucket_name" {
  description = "S3 bucket for MLflow artifacts."
  value       = module.modelpilot.artifact_bucket_name
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
