# A complete modelpilot stack: a VPC with private subnets and one NAT gateway, the EKS cluster with CPU and
# GPU node groups, the artifact bucket, IRSA roles, ECR repositories and the PostgreSQL of the prediction log.
#   terraform init && terraform apply
#   aws eks update-kubeconfig --name modelpilot --region eu-west-1
# then follow docs/install.md.

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "modelpilot"
      ManagedBy = "terraform"
    }
  }
}

locals {
  azs = var.availability_zones
}

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "6.6.0"

  name = var.name
  cidr = var.vpc_cidr

  azs             = local.azs
  private_subnets = [for index, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, index)]
  public_subnets  = [for index, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, index + 48)]
  intra_subnets   = [for index, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, index + 52)]

  enable_nat_gateway = true
  single_nat_gateway = true

  public_subnet_tags = {
    "kubernetes.io/role/elb" = 1
  }

  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = 1
  }
}

module "modelpilot" {
  source = "../.."

  name                         = var.name
  kubernetes_version           = "1.34"
  vpc_id                       = module.vpc.vpc_id
  subnet_ids                   = module.vpc.private_subnets
  control_plane_subnet_ids     = module.vpc.intra_subnets
  endpoint_public_access       = length(var.admin_cidrs) > 0
  endpoint_public_access_cidrs = var.admin_cidrs

  gpu_node_group = {
    instance_types = ["g5.xlarge"]
    min_size       = 0
    desired_size   = 1
    max_size       = 4
  }

  # The ModelDeployment of k8s/examples/fraud-detector-gateway.yaml: its tracks' ServiceAccounts
  # (fraud-detector-stable, fraud-detector-canary) get the inference role, fraud-detector-training the training role.
  model_deployments = [
    { namespace = "ml", name = "fraud-detector", training_service_account = "fraud-detector-training" },
  ]
  model_artifact_prefix = "mlartifacts/"

  # PostgreSQL for the prediction log (and MLflow's backend store if wanted), in the private subnets.
  database = {
    enabled = true
  }

  # Nobody is a cluster administrator by default; these roles are.
  access_entries = {
    for index, arn in var.admin_principal_arns : "admin-${index}" => {
      principal_arn = arn
      policy_associations = {
        admin = {
          policy_arn   = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = { type = "cluster" }
        }
      }
    }
  }

  tags = {
    Environment = "example"
  }
}
