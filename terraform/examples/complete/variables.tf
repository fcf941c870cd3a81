variable "region" {
  description = "AWS region of the stack."
  type        = string
  default     = "eu-west-1"
}

variable "availability_zones" {
  description = "Availability zones of the subnets (named, so the set never grows by itself when AWS adds one)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "availability_zones needs at least two zones."
  }
}

variable "name" {
  description = "Name of the cluster and prefix of every resource."
  type        = string
  default     = "modelpilot"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be a CIDR block."
  }
}

variable "admin_cidrs" {
  description = "CIDR blocks that may reach the public Kubernetes API endpoint; empty keeps it private."
  type        = list(string)
  default     = []
}

variable "admin_principal_arns" {
  description = "IAM roles or users that administer the cluster (EKS access entries); the identity that runs terraform is not an administrator unless listed."
  type        = list(string)

  validation {
    condition     = length(var.admin_principal_arns) > 0
    error_message = "admin_principal_arns needs at least one IAM role or user ARN, or nobody can use the cluster."
  }
}
