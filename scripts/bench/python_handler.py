"""The cold-start yardstick: a minimal Python Lambda that imports boto3 and reads one DynamoDB
item per invocation, speaking the Lambda Runtime API directly (as a custom runtime does).
tierup-bench starts it next to api-events against the same emulator and runtime API."""

import json
import os
import urllib.request

import boto3

TABLE = os.environ["TABLE_NAME"]
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
dynamodb = boto3.client("dynamodb")


def handler(event):
    item = dynamodb.get_item(
        TableName=TABLE,
        Key={"pk": {"S": "USER#" + event.get("user_id", "nobody")}, "sk": {"S": "PROFILE"}},
        ConsistentRead=True,
    )
    return {"statusCode": 200 if "Item" in item else 404, "body": ""}


while True:
    with urllib.request.urlopen(f"http://{API}/2018-06-01/runtime/invocation/next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read() or b"{}")
    body = json.dumps(handler(event)).encode()
    urllib.request.urlopen(
        urllib.request.Request(
            f"http://{API}/2018-06-01/runtime/invocation/{request_id}/response",
            data=body,
            method="POST",
        )
    ).read()
