"""Creates what Stratus expects in LocalStack: the flow-code bucket and the notification
queue. Work pool queues are created by Stratus itself, with their pools. Idempotent."""

import os
import sys

import boto3  # installed with localstack-core

endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:4566"
bucket = os.environ.get("STRATUS_S3_BUCKET", "stratus-flow-code")
session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
s3 = session.client("s3", endpoint_url=endpoint)
if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket=bucket)
sqs = session.client("sqs", endpoint_url=endpoint)
url = sqs.create_queue(QueueName="stratus-notifications")["QueueUrl"]
print(f"LocalStack ready: bucket s3://{bucket}, queue {url}")
