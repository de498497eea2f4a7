output "recommend_url" {
  description = "Base URL of recommend; try $URL/recommend/1."
  value       = module.movierec.recommend_url
}

output "instance_id" {
  description = "Host instance ID (SSM session target; repository variable MOVIEREC_INSTANCE_ID)."
  value       = module.movierec.instance_id
}

output "store_uri" {
  description = "MOVIEREC_STORE for running the pipeline from a workstation."
  value       = module.movierec.store_uri
}

output "region" {
  description = "Region of the deployment (repository variable AWS_REGION)."
  value       = module.movierec.region
}

output "ci_role_arn" {
  description = "Role for the GitHub deploy job (repository variable AWS_DEPLOY_ROLE_ARN)."
  value       = module.movierec.ci_role_arn
}

output "deploy_document_name" {
  description = "SSM document the GitHub deploy job runs (repository variable MOVIEREC_DEPLOY_DOCUMENT)."
  value       = module.movierec.deploy_document_name
}
