variable "name" {
  description = "Name of the EKS cluster; also the prefix of every other resource (bucket, roles, repositories)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the EKS control plane, e.g. 1.34."
  type        = string
  default     = "1.34"

  validation {
    condition     = can(regex("^1\\.(3[0-9]|[4-9][0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version from 1.30 on, e.g. 1.34 (the chart needs pod-index labels)."
  }
}

variable "vpc_id" {
  description = "VPC the cluster runs in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123abcd."
  }
}

variable "subnet_ids" {
  description = "Private subnets for the nodes, in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "subnet_ids needs at least two subnet ids (subnet-...)."
  }
}

variable "control_plane_subnet_ids" {
  description = "Subnets for the control plane's network interfaces; empty uses subnet_ids."
  type        = list(string)
  default     = []
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API endpoint publicly (restricted to endpoint_public_access_cidrs)."
  type        = bool
  default     = false
}

variable "endpoint_public_access_cidrs" {
  description = "CIDR blocks allowed to reach a public API endpoint."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.endpoint_public_access_cidrs : can(cidrhost(cidr, 0)) && cidr != "0.0.0.0/0"])
    error_message = "endpoint_public_access_cidrs must be valid CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "cpu_node_group" {
  description = "The general-purpose node group: the operator, MLflow, CPU serving."
  type = object({
    instance_types = optional(list(string), ["m7i.xlarge"])
    min_size       = optional(number, 2)
    max_size       = optional(number, 6)
    desired_size   = optional(number, 2)
    disk_size_gib  = optional(number, 50)
  })
  default = {}

  validation {
    condition     = var.cpu_node_group.min_size >= 1 && var.cpu_node_group.min_size <= var.cpu_node_group.desired_size && var.cpu_node_group.desired_size <= var.cpu_node_group.max_size
    error_message = "cpu_node_group needs 1 <= min_size <= desired_size <= max_size."
  }
}

variable "gpu_node_group" {
  description = "The GPU node group for serving and training (NVIDIA AMI, tainted nvidia.com/gpu=present:NoSchedule)."
  type = object({
    enabled        = optional(bool, true)
    instance_types = optional(list(string), ["g5.xlarge", "g6.xlarge"])
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = optional(number, 0)
    max_size       = optional(number, 4)
    desired_size   = optional(number, 1)
    disk_size_gib  = optional(number, 200)
  })
  default = {}

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.gpu_node_group.capacity_type)
    error_message = "gpu_node_group.capacity_type must be ON_DEMAND or SPOT."
  }

  validation {
    condition     = var.gpu_node_group.min_size >= 0 && var.gpu_node_group.min_size <= var.gpu_node_group.desired_size && var.gpu_node_group.desired_size <= var.gpu_node_group.max_size
    error_message = "gpu_node_group needs 0 <= min_size <= desired_size <= max_size."
  }
}

variable "artifact_bucket_name" {
  description = "Name of the S3 bucket for MLflow artifacts and training data; empty derives <name>-artifacts-<account id>."
  type        = string
  default     = ""

  validation {
    condition     = var.artifact_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifact_bucket_name))
    error_message = "artifact_bucket_name must be a valid S3 bucket name."
  }
}

variable "artifact_bucket_kms_key_arn" {
  description = "KMS key for the artifact bucket; null creates a dedicated key with rotation."
  type        = string
  default     = null
}

variable "artifact_bucket_force_destroy" {
  description = "Allow terraform destroy to delete a non-empty artifact bucket (never in production)."
  type        = bool
  default     = false
}

variable "artifact_access_log_bucket" {
  description = "Existing bucket that receives the artifact bucket's access logs; empty disables access logging."
  type        = string
  default     = ""
}

variable "artifact_noncurrent_version_days" {
  description = "Days an overwritten or deleted artifact version is kept before it expires."
  type        = number
  default     = 90

  validation {
    condition     = var.artifact_noncurrent_version_days >= 1
    error_message = "artifact_noncurrent_version_days must be at least 1."
  }
}

variable "operator_service_account" {
  description = "namespace:name of the operator's ServiceAccount (the Helm release's)."
  type        = string
  default     = "modelpilot:modelpilot-operator"

  validation {
    condition     = can(regex("^[a-z0-9-]+:[a-z0-9.-]+$", var.operator_service_account))
    error_message = "operator_service_account must be namespace:name."
  }
}

variable "model_deployments" {
  description = "The ModelDeployments whose pods get AWS roles (IRSA). The serving role trusts exactly the ServiceAccounts the operator makes for each (<name>-stable and <name>-canary in its namespace); the training role trusts exactly each one's training ServiceAccount (spec.training.serviceAccountName; default <name>-training)."
  type = list(object({
    namespace                = string
    name                     = string
    training_service_account = optional(string)
  }))

  validation {
    condition     = length(var.model_deployments) > 0
    error_message = "model_deployments needs at least one ModelDeployment (namespace and name)."
  }

  validation {
    condition     = alltrue([for md in var.model_deployments : can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", md.namespace))])
    error_message = "model_deployments: each namespace must be a DNS label (lowercase letters, digits, dashes; no wildcards)."
  }

  validation {
    # The operator's ServiceAccount names are <name>-stable and <name>-canary: at most 253 characters.
    condition     = alltrue([for md in var.model_deployments : can(regex("^[a-z0-9]([-a-z0-9.]{0,244}[a-z0-9])?$", md.name))])
    error_message = "model_deployments: each name must be a ModelDeployment name (lowercase letters, digits, dashes, dots; at most 246 characters; no wildcards)."
  }

  validation {
    condition     = alltrue([for md in var.model_deployments : md.training_service_account == null || can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", md.training_service_account))])
    error_message = "model_deployments: training_service_account must be a ServiceAccount name (no wildcards)."
  }
}

variable "model_artifact_prefix" {
  description = "Key prefix of the model artifacts in the artifact bucket (MLflow's --artifacts-destination s3://<bucket>/<prefix>); the serving role reads only below it, training data elsewhere in the bucket stays out of its reach."
  type        = string
  default     = "mlartifacts/"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$", var.model_artifact_prefix))
    error_message = "model_artifact_prefix must be a key prefix ending in / (e.g. mlartifacts/), not the bucket's root."
  }
}

variable "cluster_creator_admin" {
  description = "Make the identity that runs terraform a cluster administrator (an access entry). Off: list administrators in access_entries."
  type        = bool
  default     = false
}

variable "access_entries" {
  description = "EKS access entries: who may use the Kubernetes API, keyed by a name of your choice. Cluster administrators take policy_arn arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy with access_scope { type = \"cluster\" }."
  type = map(object({
    principal_arn     = string
    kubernetes_groups = optional(list(string))
    type              = optional(string, "STANDARD")
    policy_associations = optional(map(object({
      policy_arn = string
      access_scope = object({
        type       = string
        namespaces = optional(list(string))
      })
    })), {})
  }))
  default = {}

  validation {
    condition     = alltrue([for entry in values(var.access_entries) : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", entry.principal_arn))])
    error_message = "access_entries: principal_arn must be an IAM role or user ARN."
  }

  validation {
    condition     = alltrue(flatten([for entry in values(var.access_entries) : [for association in values(entry.policy_associations) : contains(["cluster", "namespace"], association.access_scope.type)]]))
    error_message = "access_entries: access_scope.type must be cluster or namespace."
  }
}

variable "cluster_secrets_kms_key_arn" {
  description = "KMS key that envelope-encrypts Kubernetes Secrets; null creates a dedicated key with rotation."
  type        = string
  default     = null

  validation {
    condition     = var.cluster_secrets_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.cluster_secrets_kms_key_arn))
    error_message = "cluster_secrets_kms_key_arn must be a KMS key ARN."
  }
}

variable "ecr_repositories" {
  description = "ECR repositories for the images (scan on push, immutable tags)."
  type        = list(string)
  default     = ["modelpilot-operator", "modelpilot-inference", "modelpilot-train"]

  validation {
    condition     = alltrue([for repository in var.ecr_repositories : can(regex("^[a-z0-9][a-z0-9._/-]*$", repository))])
    error_message = "ecr_repositories must be valid repository names."
  }
}

variable "ecr_untagged_expiry_days" {
  description = "Days after which untagged images are removed from ECR."
  type        = number
  default     = 14
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "database" {
  description = "PostgreSQL (RDS) for the prediction log and, if wanted, MLflow's backend store: private subnets, reachable from the cluster nodes only, encrypted, TLS required, master password managed and rotated by RDS in Secrets Manager."
  type = object({
    enabled                   = optional(bool, false)
    subnet_ids                = optional(list(string), [])
    engine_version            = optional(string, "17")
    instance_class            = optional(string, "db.t4g.medium")
    allocated_storage_gib     = optional(number, 50)
    max_allocated_storage_gib = optional(number, 500)
    multi_az                  = optional(bool, true)
    backup_retention_days     = optional(number, 7)
    deletion_protection       = optional(bool, true)
    kms_key_arn               = optional(string)
    database_name             = optional(string, "modelpilot")
    master_username           = optional(string, "modelpilot")
  })
  default = {}

  validation {
    condition     = length(var.database.subnet_ids) == 0 || length(var.database.subnet_ids) >= 2
    error_message = "database.subnet_ids needs at least two private subnets (two availability zones), or none to use subnet_ids."
  }
  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?$", var.database.engine_version))
    error_message = "database.engine_version must be a PostgreSQL version such as 17 or 17.6."
  }
  validation {
    condition     = var.database.allocated_storage_gib >= 20 && var.database.max_allocated_storage_gib >= var.database.allocated_storage_gib
    error_message = "database needs allocated_storage_gib >= 20 and max_allocated_storage_gib >= allocated_storage_gib."
  }
  validation {
    condition     = var.database.backup_retention_days >= 1 && var.database.backup_retention_days <= 35
    error_message = "database.backup_retention_days must be between 1 and 35."
  }
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database.database_name)) && can(regex("^[a-z][a-z0-9_]{0,15}$", var.database.master_username))
    error_message = "database.database_name and master_username must be lowercase identifiers (letters, digits, underscores)."
  }
}
