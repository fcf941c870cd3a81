# EKS for modelpilot: a CPU node group for the operator, MLflow and CPU serving, and a GPU node group
# (NVIDIA AMI) tainted so that only pods that ask for GPUs land there. Storage, IAM and registries are
# in s3.tf, iam.tf and ecr.tf.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "modelpilot"
    "modelpilot.io/cluster"     = var.name
  })

  # Matches the tolerations in the ModelDeployment examples and the GPU nodes kwok simulates in tests.
  gpu_taint = {
    key    = "nvidia.com/gpu"
    value  = "present"
    effect = "NO_SCHEDULE"
  }

  # IMDSv2 only, and one hop: a pod (one hop further than the node) cannot reach the instance metadata and
  # so never gets the node role's credentials; pods get their own roles through IRSA (iam.tf).
  node_metadata_options = {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  # Each node group's root volume (set in the launch template, where disk_size does not apply): gp3, encrypted.
  root_volume = {
    for group, size in { cpu = var.cpu_node_group.disk_size_gib, gpu = var.gpu_node_group.disk_size_gib } : group => {
      root = {
        device_name = "/dev/xvda"
        ebs = {
          volume_size           = size
          volume_type           = "gp3"
          encrypted             = true
          delete_on_termination = true
        }
      }
    }
  }

  cpu_node_group = {
    cpu = {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = var.cpu_node_group.instance_types
      min_size       = var.cpu_node_group.min_size
      max_size       = var.cpu_node_group.max_size
      desired_size   = var.cpu_node_group.desired_size
      # disk_size applies only without a custom launch template; the root volume is set here instead.
      block_device_mappings = local.root_volume.cpu
      metadata_options      = local.node_metadata_options
      labels = {
        "modelpilot.io/node-pool" = "cpu"
      }
    }
  }

  gpu_node_group = var.gpu_node_group.enabled ? {
    gpu = {
      # The NVIDIA AMI ships the driver and container toolkit; the device plugin (see docs/install.md)
      # advertises nvidia.com/gpu to the scheduler.
      ami_type              = "AL2023_x86_64_NVIDIA"
      instance_types        = var.gpu_node_group.instance_types
      capacity_type         = var.gpu_node_group.capacity_type
      min_size              = var.gpu_node_group.min_size
      max_size              = var.gpu_node_group.max_size
      desired_size          = var.gpu_node_group.desired_size
      block_device_mappings = local.root_volume.gpu
      metadata_options      = local.node_metadata_options
      labels = {
        "modelpilot.io/node-pool" = "gpu"
        "nvidia.com/gpu.present"  = "true"
      }
      taints = {
        gpu = local.gpu_taint
      }
    }
  } : {}
}

module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "21.19.0"

  name               = var.name
  kubernetes_version = var.kubernetes_version

  vpc_id                   = var.vpc_id
  subnet_ids               = var.subnet_ids
  control_plane_subnet_ids = length(var.control_plane_subnet_ids) > 0 ? var.control_plane_subnet_ids : var.subnet_ids

  endpoint_private_access      = true
  endpoint_public_access       = var.endpoint_public_access
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs

  # IRSA: the serving and training pods get S3 access through their ServiceAccounts (iam.tf).
  enable_irsa = true

  # Who may use the Kubernetes API is listed, in access entries only (no aws-auth ConfigMap); whoever runs
  # terraform is not made an administrator unless asked.
  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = var.cluster_creator_admin
  access_entries                           = var.access_entries

  # Secrets are envelope-encrypted with a key of this stack's (or the one given), not the module's own.
  create_kms_key = false
  encryption_config = {
    provider_key_arn = local.cluster_secrets_kms_key_arn
    resources        = ["secrets"]
  }

  enabled_log_types = ["api", "audit", "authenticator"]

  addons = {
    coredns    = {}
    kube-proxy = {}
    vpc-cni = {
      before_compute = true
    }
    eks-pod-identity-agent = {
      before_compute = true
    }
  }

  eks_managed_node_groups = merge(local.cpu_node_group, local.gpu_node_group)

  tags = local.tags
}
