output "instance_id" {
  description = "ID of the MicroK8s host (for `aws ssm start-session --target`)."
  value       = aws_instance.host.id
}

output "public_ip" {
  description = "Elastic IP of the host."
  value       = aws_eip.host.public_ip
}

output "recommend_url" {
  description = "Base URL of the recommend function (Knative domain <eip>.sslip.io); append /recommend/<user_id>."
  value       = "${local.tls ? "https" : "http"}://recommend.movierec.${aws_eip.host.public_ip}.sslip.io"
}

output "bucket_name" {
  description = "Name of the store bucket."
  value       = aws_s3_bucket.store.id
}

output "bucket_arn" {
  description = "ARN of the store bucket."
  value       = aws_s3_bucket.store.arn
}

output "store_uri" {
  description = "MOVIEREC_STORE for the functions and for running the pipeline from a workstation."
  value       = local.store_uri
}

output "host_role_arn" {
  description = "ARN of the host's IAM role (it may assume the workloads' roles, and use SSM; nothing else)."
  value       = aws_iam_role.host.arn
}

output "workload_role_arns" {
  description = "ARN of each workload's role (ingest, recommend, precompute, deadletter, refresh), scoped to its own prefixes of the store."
  value       = { for workload, role in aws_iam_role.workload : workload => role.arn }
}

output "deploy_document_name" {
  description = "SSM document that runs movierec-deploy of one commit on the host (repository variable MOVIEREC_DEPLOY_DOCUMENT)."
  value       = aws_ssm_document.deploy.name
}

output "security_group_id" {
  description = "ID of the host's security group."
  value       = aws_security_group.host.id
}

output "ci_role_arn" {
  description = "ARN of the role the GitHub deploy job assumes (null when github_repository is null); set it as the repository variable AWS_DEPLOY_ROLE_ARN."
  value       = try(aws_iam_role.ci[0].arn, null)
}

output "region" {
  description = "Region of the bucket and host (AWS_REGION for workstation commands and CI)."
  value       = aws_s3_bucket.store.bucket_region
}
