# PostgreSQL for the prediction log (docs/prediction-log.md) and, if wanted, MLflow's backend store:
# RDS in the cluster's private subnets, reachable only from the cluster's nodes, encrypted with a key of the
# stack's, TLS required, and a master password that RDS keeps in Secrets Manager and rotates itself.
# Off unless var.database.enabled.

locals {
  database_enabled    = var.database.enabled
  database_subnet_ids = length(var.database.subnet_ids) > 0 ? var.database.subnet_ids : var.subnet_ids
  database_kms_key_arn = local.database_enabled ? (
    var.database.kms_key_arn != null ? var.database.kms_key_arn : aws_kms_key.database[0].arn
  ) : null
}

resource "aws_kms_key" "database" {
  count = local.database_enabled && var.database.kms_key_arn == null ? 1 : 0

  description             = "modelpilot ${var.name}: PostgreSQL storage, snapshots, Performance Insights and master secret"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key_administered_by_account.json
  tags                    = local.tags
}

resource "aws_kms_alias" "database" {
  count = local.database_enabled && var.database.kms_key_arn == null ? 1 : 0

  name          = "alias/${var.name}-database"
  target_key_id = aws_kms_key.database[0].key_id
}

resource "aws_db_subnet_group" "database" {
  count = local.database_enabled ? 1 : 0

  name        = "${var.name}-database"
  description = "modelpilot ${var.name}: private subnets of the prediction log database"
  subnet_ids  = local.database_subnet_ids
  tags        = local.tags
}

# Only the cluster's nodes (and so its pods, which share the node security group with the VPC CNI) reach
# the database, on its port only; it opens no connection itself.
resource "aws_security_group" "database" {
  count = local.database_enabled ? 1 : 0

  name        = "${var.name}-database"
  description = "modelpilot ${var.name}: PostgreSQL from the cluster nodes"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "database_from_nodes" {
  count = local.database_enabled ? 1 : 0

  security_group_id            = aws_security_group.database[0].id
  description                  = "PostgreSQL from the EKS nodes"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = module.eks.node_security_group_id
}

resource "aws_db_parameter_group" "database" {
  count = local.database_enabled ? 1 : 0

  name        = "${var.name}-postgres${split(".", var.database.engine_version)[0]}"
  family      = "postgres${split(".", var.database.engine_version)[0]}"
  description = "modelpilot ${var.name}: TLS required, slow statements and connections logged"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  tags = local.tags
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = local.database_enabled ? 1 : 0

  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = local.database_enabled ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "database" {
  #checkov:skip=CKV_AWS_133:backups come from var.database.backup_retention_days, validated to 1-35 days (never off)
  #checkov:skip=CKV_AWS_157:Multi-AZ comes from var.database.multi_az, true unless a test stack turns it off
  #checkov:skip=CKV_AWS_293:deletion protection comes from var.database.deletion_protection, true by default
  count = local.database_enabled ? 1 : 0

  identifier     = "${var.name}-predictions"
  engine         = "postgres"
  engine_version = var.database.engine_version
  instance_class = var.database.instance_class
  db_name        = var.database.database_name
  username       = var.database.master_username

  # RDS creates the master password, keeps it in Secrets Manager (encrypted with the stack's key) and
  # rotates it on its own schedule (every 7 days); nothing here or in the state ever holds it.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = local.database_kms_key_arn

  allocated_storage     = var.database.allocated_storage_gib
  max_allocated_storage = var.database.max_allocated_storage_gib
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = local.database_kms_key_arn

  db_subnet_group_name   = aws_db_subnet_group.database[0].name
  vpc_security_group_ids = [aws_security_group.database[0].id]
  publicly_accessible    = false
  multi_az               = var.database.multi_az
  parameter_group_name   = aws_db_parameter_group.database[0].name

  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true
  backup_retention_period             = var.database.backup_retention_days
  copy_tags_to_snapshot               = true
  deletion_protection                 = var.database.deletion_protection
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-predictions-final"
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  performance_insights_enabled    = true
  performance_insights_kms_key_id = local.database_kms_key_arn
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring[0].arn

  tags = local.tags

  depends_on = [aws_iam_role_policy_attachment.rds_monitoring]
}
