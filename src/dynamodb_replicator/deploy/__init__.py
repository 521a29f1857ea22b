"""Deployment to AWS: the Lambda zip, the CloudFormation template, event source mappings."""
