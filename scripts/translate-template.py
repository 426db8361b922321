"""Translates template.yaml (SAM) into plain CloudFormation, offline, so that cfn-lint can check
what SAM generates (roles, policy templates, permissions) and not only what we wrote.

    python scripts/translate-template.py SOURCE TARGET [--parameter NAME=VALUE ...]

Each --parameter replaces that parameter's Default in the output (as if a deployment passed it),
so that a checker evaluating the Conditions with the Defaults sees that deployment; an unknown
name fails. The translator itself keeps Conditions unevaluated."""

import argparse
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


def override_defaults(template, overrides):
    declared = template.get("Parameters", {})
    for name, value in overrides.items():
        if name not in declared:
            sys.exit(f"translate: --parameter {name}: the template declares no such parameter")
        declared[name]["Default"] = value


def main(source, target, overrides):
    with open(source, encoding="utf-8") as handle:
        template = yaml_parse(handle.read())
    override_defaults(template, overrides)
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
        **overrides,
    }
    output = transform(template, parameters, OfflinePolicies())
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(output, handle, indent=2, sort_keys=True)
    resources = output.get("Resources", {})
    given = "".join(f" {name}={value!r}" for name, value in overrides.items())
    print(f"translated {source}{given}: {len(resources)} CloudFormation resources -> {target}")


def parameter(text):
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("source")
    arguments.add_argument("target")
    arguments.add_argument("--parameter", type=parameter, action="append", default=[], metavar="NAME=VALUE")
    options = arguments.parse_args()
    main(options.source, options.target, dict(options.parameter))
