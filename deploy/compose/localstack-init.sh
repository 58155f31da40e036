#!/bin/bash
# LocalStack READY hook (mounted into /etc/localstack/init/ready.d/): the AWS half of the compose stack.
# Creates the SQS queue the bridge consumes and the EventBridge rule that forwards SageMaker events
# (source aws.sagemaker) to it, as in production. Idempotent: re-running it changes nothing.
set -euo pipefail

REGION="${AWS_DEFAULT_REGION:-us-east-1}"
ACCOUNT="000000000000"              # LocalStack's default account id
QUEUE_NAME="ml-events"
RULE_NAME="sagemaker-ml-events"
QUEUE_ARN="arn:aws:sqs:${REGION}:${ACCOUNT}:${QUEUE_NAME}"
RULE_ARN="arn:aws:events:${REGION}:${ACCOUNT}:rule/${RULE_NAME}"

awslocal sqs create-queue --region "$REGION" --queue-name "$QUEUE_NAME" \
  --attributes VisibilityTimeout=60,MessageRetentionPeriod=1209600,ReceiveMessageWaitTimeSeconds=20
QUEUE_URL="$(awslocal sqs get-queue-url --region "$REGION" --queue-name "$QUEUE_NAME" \
  --query QueueUrl --output text)"

# Allow EventBridge (only this rule) to send to the queue, as a real deployment must.
POLICY=$(cat <<JSON
{"Version":"2012-10-17","Statement":[{"Sid":"AllowEventBridgeRule","Effect":"Allow",
"Principal":{"Service":"events.amazonaws.com"},"Action":"sqs:SendMessage","Resource":"${QUEUE_ARN}",
"Condition":{"ArnEquals":{"aws:SourceArn":"${RULE_ARN}"}}}]}
JSON
)
ATTRS=$(python3 -c 'import json, sys; print(json.dumps({"Policy": sys.argv[1]}))' "$(echo "$POLICY" | tr -d '\n')")
awslocal sqs set-queue-attributes --region "$REGION" --queue-url "$QUEUE_URL" --attributes "$ATTRS"

awslocal events put-rule --region "$REGION" --name "$RULE_NAME" \
  --description "SageMaker state changes to the ML Event Bridge queue" \
  --event-pattern '{"source":["aws.sagemaker"]}' \
  --state ENABLED
awslocal events put-targets --region "$REGION" --rule "$RULE_NAME" \
  --targets "Id=ml-events-sqs,Arn=${QUEUE_ARN}"

echo "localstack-init: queue ${QUEUE_URL}, rule ${RULE_NAME} -> ${QUEUE_ARN}"
