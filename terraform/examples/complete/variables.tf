variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "allowed_http_cidrs" {
  description = "CIDR blocks allowed to call recommend on port 80 (your address as /32)."
  type        = list(string)
}

variable "kafka_bootstrap_servers" {
  description = "host:port of the Kafka brokers carrying the stream."
  type        = list(string)
}

variable "kafka_topic" {
  description = "The stream's topic, movielog<N>."
  type        = string
  default     = "movielog1"
}

variable "github_repository" {
  description = "owner/name of your movierec repository on GitHub (source of manifests and images)."
  type        = string
}

variable "kafka_auth" {
  description = "Whether the KafkaSource authenticates with SASL over TLS (the Secret movierec-kafka-auth on the host, docs/deploy.md)."
  type        = bool
  default     = false
}

variable "tls_email" {
  description = "Let's Encrypt contact address; null serves recommend over plain HTTP."
  type        = string
  default     = null
}
