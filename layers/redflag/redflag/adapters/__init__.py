"""AWS adapters: the only modules that talk to DynamoDB, SSM, SES and SNS."""
