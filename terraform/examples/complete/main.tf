# The whole deployment in one region: host, bucket, IAM, and the CI deploy role.
# terraform init && terraform apply -var 'allowed_http_cidrs=["203.0.113.7/32"]'
provider "aws" {
  region = var.region
}

module "movierec" {
  source = "../.."

  name               = "movierec"
  allowed_http_cidrs = var.allowed_http_cidrs

  kafka_bootstrap_servers = var.kafka_bootstrap_servers
  kafka_topic             = var.kafka_topic
  kafka_auth              = var.kafka_auth
  tls_email               = var.tls_email

  repository_url    = "https://github.com/${var.github_repository}.git"
  github_repository = var.github_repository
  image_registry    = "ghcr.io/${lower(split("/", var.github_repository)[0])}"

  tags = {
    Environment = "production"
  }
}
