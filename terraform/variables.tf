variable "name" {
  description = "Name prefix for every resource (instance, bucket prefix, IAM role, security group)."
  type        = string
  default     = "movierec"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lowercase letters, digits or hyphens (it prefixes the S3 bucket name)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "instance_type" {
  description = "EC2 instance type of the MicroK8s host: one of the amd64 types whose CPU and memory tests/deploy/test_capacity.py checks against every pod's requests at max-scale (8 vCPU, 32 GiB or more; Knative asks at least 6 CPUs of a single node)."
  type        = string
  default     = "t3.2xlarge"

  validation {
    condition     = contains(["t3.2xlarge", "t3a.2xlarge", "m6i.2xlarge", "m6a.2xlarge", "m7i.2xlarge", "m7a.2xlarge", "m6i.4xlarge", "m7i.4xlarge"], var.instance_type)
    error_message = "instance_type must be one of t3.2xlarge, t3a.2xlarge, m6i.2xlarge, m6a.2xlarge, m7i.2xlarge, m7a.2xlarge, m6i.4xlarge, m7i.4xlarge (amd64, at least 8 vCPU and 32 GiB: the pods' requests at max-scale, Knative, Kafka source and monitoring)."
  }
}

variable "root_volume_size" {
  description = "Size of the host's encrypted gp3 root volume in GiB (images, containerd, logs)."
  type        = number
  default     = 50

  validation {
    condition     = var.root_volume_size >= 30 && var.root_volume_size <= 1000
    error_message = "root_volume_size must be between 30 and 1000 GiB; the precompute image alone is about 1.4 GB unpacked."
  }
}

variable "ami_id" {
  description = "AMI for the host. Null selects the newest Ubuntu 24.04 LTS amd64 image published by Canonical at the first apply; a newer image later does not replace the host (ignore_changes), set ami_id or taint the instance to move."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "subnet_id" {
  description = "Public subnet for the host. Null uses the first subnet of the region's default VPC."
  type        = string
  default     = null
}

variable "allowed_http_cidrs" {
  description = "CIDR blocks allowed to reach the recommend endpoint on port 80. Nothing else is open inbound (administration goes through SSM Session Manager)."
  type        = list(string)

  validation {
    condition     = length(var.allowed_http_cidrs) > 0 && alltrue([for c in var.allowed_http_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_http_cidrs must list at least one valid IPv4 CIDR, e.g. [\"203.0.113.7/32\"]."
  }
}

variable "kafka_bootstrap_servers" {
  description = "host:port of the Kafka brokers that carry the movielog stream."
  type        = list(string)

  validation {
    condition     = length(var.kafka_bootstrap_servers) > 0 && alltrue([for s in var.kafka_bootstrap_servers : can(regex("^[A-Za-z0-9.-]+:[0-9]{1,5}$", s))])
    error_message = "kafka_bootstrap_servers must be a non-empty list of host:port."
  }
}

variable "kafka_egress_cidrs" {
  description = "CIDR blocks of the Kafka brokers; outbound traffic to the Kafka ports is allowed only to these."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.kafka_egress_cidrs : can(cidrhost(c, 0))])
    error_message = "kafka_egress_cidrs must be valid IPv4 CIDR blocks."
  }
}

variable "kafka_topic" {
  description = "The stream's topic, movielog<N>."
  type        = string
  default     = "movielog1"

  validation {
    condition     = can(regex("^movielog[0-9]+$", var.kafka_topic))
    error_message = "kafka_topic must be movielog<N>, e.g. movielog1."
  }
}

variable "repository_url" {
  description = "HTTPS clone URL of the movierec repository whose knative/overlays/aws the host applies."
  type        = string

  validation {
    condition     = can(regex("^https://", var.repository_url))
    error_message = "repository_url must be an https:// clone URL (the host has no SSH key)."
  }
}

variable "git_ref" {
  description = "Branch, tag or commit of repository_url deployed at first boot; CI deploys later commits."
  type        = string
  default     = "main"
}

variable "image_registry" {
  description = "Registry and namespace holding the movierec-<function> images, e.g. ghcr.io/OWNER. The images must be pullable without credentials (public packages)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$", var.image_registry))
    error_message = "image_registry must be a registry host and namespace in lowercase, without a trailing slash or tag, e.g. ghcr.io/owner."
  }
}

variable "image_tag" {
  description = "Image tag deployed at first boot (CI pushes main, sha-<commit> and model-<version>)."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid OCI tag."
  }
}

variable "microk8s_channel" {
  description = "Snap channel of MicroK8s. Its Kubernetes must meet the chosen Knative's minimum (local.knative_min_kubernetes in main.tf): 1.34 or newer for Knative 1.23."
  type        = string
  default     = "1.34/stable"

  validation {
    condition     = can(regex("^1\\.(3[4-9]|[4-9][0-9])/stable$", var.microk8s_channel))
    error_message = "microk8s_channel must be a stable channel of Kubernetes 1.34 or newer (e.g. 1.34/stable): Knative 1.23 exits on an older API server."
  }
}

variable "knative_version" {
  description = "Release of Knative Serving, Eventing, net-kourier and the Kafka source (one version for all, as Knative releases them together). Only releases listed in local.knative_min_kubernetes (main.tf) are accepted."
  type        = string
  default     = "1.23.0"

  validation {
    condition     = can(regex("^1\\.23\\.[0-9]+$", var.knative_version))
    error_message = "knative_version must be a 1.23.x release: add a row to local.knative_min_kubernetes (main.tf) and widen this check to use another minor."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket for the store. Null lets AWS generate a unique name from the \"name\" prefix."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name."
  }
}

variable "store_prefix" {
  description = "Key prefix of the movierec store inside the bucket (MOVIEREC_STORE = s3://bucket/prefix)."
  type        = string
  default     = "movierec"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9/_-]*[a-z0-9]$", var.store_prefix))
    error_message = "store_prefix must be a relative key prefix without leading or trailing slash."
  }
}

variable "recs_ia_transition_days" {
  description = "Days after which recommendation shards (recs/<run>/) move to STANDARD_IA. They stay readable at once, so rollback to an old run still works."
  type        = number
  default     = 30

  validation {
    condition     = var.recs_ia_transition_days >= 30
    error_message = "S3 moves objects to STANDARD_IA after 30 days at the earliest."
  }
}

variable "recs_expiration_days" {
  description = "Days after which recommendation shards (objects over 64 KiB under recs/) are deleted. Must exceed the longest gap between two publishes: a run still in recs/CURRENT past this age loses its shards (recs/CURRENT itself never expires). Null keeps runs forever."
  type        = number
  default     = 180

  validation {
    condition     = var.recs_expiration_days == null || try(var.recs_expiration_days >= 60, false)
    error_message = "recs_expiration_days must be null or at least 60, so that a model published on a monthly schedule is never deleted under recommend."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept (old recs/CURRENT pointers, deleted files) before it is removed."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "force_destroy" {
  description = "Whether terraform destroy may delete a bucket that still holds objects. Keep false outside experiments."
  type        = bool
  default     = false
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose main-branch workflow may deploy to the host (through SSM). Null creates no CI role."
  type        = string
  default     = null

  validation {
    condition     = var.github_repository == null || can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "create_github_oidc_provider" {
  description = "Whether to create the account's GitHub Actions OIDC provider (only one may exist per account; set false if it does)."
  type        = bool
  default     = true
}

variable "kafka_auth" {
  description = "Whether the KafkaSource authenticates to a managed Kafka with SASL over TLS. The credentials go into the Secret movierec-kafka-auth on the host (docs/deploy.md), never into Terraform state."
  type        = bool
  default     = false
}

variable "tls_email" {
  description = "Contact address for Let's Encrypt. Null (the default) serves recommend over plain HTTP; an address installs cert-manager and net-certmanager, opens ports 80 and 443 to the internet (HTTP-01 challenges), and redirects HTTP to HTTPS."
  type        = string
  default     = null

  validation {
    condition     = var.tls_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.tls_email))
    error_message = "tls_email must be null or an e-mail address."
  }
}
