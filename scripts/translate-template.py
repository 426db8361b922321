"""Translates template.yaml (SAM) into plain CloudFormation, offline, so that cfn-lint can check
what SAM generates (roles, policy templates, permissions) and not only what we wrote."""

import json
import os
import sys

# The translator asks boto for the region even with AWS::Region given; no credentials are used.
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class OfflinePolicies:
    """SAM looks managed policies up by name through IAM; the template names none, so the
    translator needs no network. This answers for the policies SAM adds on its own."""

    def load(self):
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSLambdaVPCAccessExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        }


def main(source, target):
    with open(source, encoding="utf-8") as handle:
        template = yaml_parse(handle.read())
    # What `sam package` does: local code becomes an S3 object.
    function_globals = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in function_globals:
        function_globals["CodeUri"] = "s3://packaged-by-sam/code.zip"
    for name, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in properties:
            properties["CodeUri"] = f"s3://packaged-by-sam/{name}.zip"
    parameters = {
        "AWS::Region": "eu-west-1",
        "AWS::AccountId": "123456789012",
        "AWS::Partition": "aws",
        "AWS::StackName": "secret-rotor",
    }
    output = transform(template, parameters, OfflinePolicies())
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(output, handle, indent=2, sort_keys=True)
    resources = output.get("Resources", {})
    print(f"translated {source}: {len(resources)} CloudFormation resources -> {target}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
