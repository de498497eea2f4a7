locals {
  tags = merge({ "app.kubernetes.io/part-of" = "movierec", Name = var.name }, var.tags)

  store_uri = "s3://${aws_s3_bucket.store.id}/${var.store_prefix}"

  # The Kafka ports the host may reach, taken from the bootstrap servers.
  kafka_ports = distinct([for s in var.kafka_bootstrap_servers : tonumber(split(":", s)[1])])

  # The oldest Kubernetes each Knative release starts on: its controllers exit when the
  # API server is older (DefaultKubernetesMinVersion in knative.dev/pkg's version package,
  # vendored at the release). Source and date: terraform/README.md, "Versions".
  # tests/deploy/test_versions.py checks every pair the variables accept against it.
  knative_min_kubernetes = {
    "1.23" = "1.34"
  }
  knative_minor    = join(".", slice(split(".", var.knative_version), 0, 2))
  kubernetes_minor = split("/", var.microk8s_channel)[0]

  tls = var.tls_email != null
}

data "aws_ami" "ubuntu" {
  count       = var.ami_id == null ? 1 : 0
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

data "aws_vpc" "default" {
  count   = var.subnet_id == null ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = var.subnet_id == null ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

data "aws_subnet" "host" {
  id = var.subnet_id != null ? var.subnet_id : sort(data.aws_subnets.default[0].ids)[0]
}

################################################################################
# Security group: HTTP in from the allowed CIDRs only; out only to what the host
# needs (HTTPS for snaps, images, S3, SSM; HTTP for apt; the Kafka ports).
################################################################################

resource "aws_security_group" "host" {
  name_prefix = "${var.name}-host-"
  description = "movierec MicroK8s host: recommend over HTTP from allowed CIDRs, no SSH (SSM instead)"
  vpc_id      = data.aws_subnet.host.vpc_id
  tags        = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "http" {
  # With TLS, Let's Encrypt's HTTP-01 challenge must reach port 80 from anywhere; plain
  # HTTP then only redirects to HTTPS.
  for_each = toset(local.tls ? ["0.0.0.0/0"] : var.allowed_http_cidrs)

  security_group_id = aws_security_group.host.id
  description       = "recommend (Knative ingress via Kourier) from ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  tags              = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  for_each = toset(local.tls ? var.allowed_http_cidrs : [])

  security_group_id = aws_security_group.host.id
  description       = "recommend over HTTPS (Knative ingress via Kourier) from ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.host.id
  description       = "HTTPS: snap store, container registries, Knative releases, S3, SSM"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "http" {
  security_group_id = aws_security_group.host.id
  description       = "HTTP: Ubuntu package mirrors"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "kafka" {
  for_each = { for pair in setproduct(var.kafka_egress_cidrs, local.kafka_ports) : "${pair[0]}:${pair[1]}" => pair }

  security_group_id = aws_security_group.host.id
  description       = "Kafka stream ${var.kafka_topic}"
  cidr_ipv4         = each.value[0]
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
  tags              = local.tags
}

################################################################################
# The host: MicroK8s, Knative and movierec installed by cloud-init
################################################################################

# Allocated before the instance so cloud-init can name the Knative domain after it.
resource "aws_eip" "host" {
  domain = "vpc"
  tags   = local.tags
}

resource "aws_instance" "host" {
  ami                         = var.ami_id != null ? var.ami_id : data.aws_ami.ubuntu[0].id
  instance_type               = var.instance_type
  subnet_id                   = data.aws_subnet.host.id
  vpc_security_group_ids      = [aws_security_group.host.id]
  iam_instance_profile        = aws_iam_instance_profile.host.name
  associate_public_ip_address = false # the Elastic IP below is its public address
  ebs_optimized               = true
  monitoring                  = true

  user_data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    microk8s_channel        = var.microk8s_channel
    knative_version         = var.knative_version
    public_ip               = aws_eip.host.public_ip
    repository_url          = var.repository_url
    git_ref                 = var.git_ref
    image_registry          = var.image_registry
    image_tag               = var.image_tag
    store_uri               = local.store_uri
    kafka_topic             = var.kafka_topic
    kafka_bootstrap_servers = join(",", var.kafka_bootstrap_servers)
    kafka_auth              = var.kafka_auth
    tls_email               = var.tls_email == null ? "" : var.tls_email
    workload_roles          = join(" ", [for w in sort(keys(aws_iam_role.workload)) : "${w}=${aws_iam_role.workload[w].arn}"])
  })
  # A changed bootstrap script means a new host; the bucket keeps all data.
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only
    # 1 hop: only the host itself reaches IMDS (and the instance role, which may do nothing
    # but assume the workloads' roles); a pod is one hop further and gets no answer. Each
    # workload gets its own short-lived credentials instead (iam.tf, terraform/README.md).
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
  }

  tags        = local.tags
  volume_tags = local.tags

  lifecycle {
    # The newest Ubuntu image is looked up at every plan; without this, the first apply
    # after Canonical publishes one would replace the host. Set ami_id (or taint) to move.
    ignore_changes = [ami]

    precondition {
      condition     = contains(keys(local.knative_min_kubernetes), local.knative_minor) && try(tonumber(split(".", local.kubernetes_minor)[1]) >= tonumber(split(".", local.knative_min_kubernetes[local.knative_minor])[1]), false)
      error_message = "microk8s_channel ${var.microk8s_channel} is older than the Kubernetes that Knative ${var.knative_version} needs (local.knative_min_kubernetes)."
    }
  }
}

resource "aws_eip_association" "host" {
  instance_id   = aws_instance.host.id
  allocation_id = aws_eip.host.id
}
