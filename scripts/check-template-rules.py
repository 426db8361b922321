"""Project rules that cfn-lint does not know, checked on the translated template (what SAM would
deploy): `python scripts/check-template-rules.py .local/template.cfn.json`. Exits 1 on any breach.

1. Function names fit Lambda's 64 characters for every stack name CloudFormation accepts (up to
   128 characters): a function either sets no FunctionName (CloudFormation generates one that
   fits) or one whose longest value, with a 128-character stack name and each parameter at its
   longest, is at most 64 characters. A name whose length cannot be bounded fails.
2. Each function logs to /aws/lambda/<its name> (what `rotor rotate` reads), and the template
   creates that log group (so its retention applies).
3. Each IAM statement that allows KMS actions carries kms:ViaService (Secrets Manager in the
   stack's region) and kms:EncryptionContext:SecretARN (secret ARNs, not "*"), grants only
   kms:Decrypt, kms:DescribeKey and kms:GenerateDataKey on a given key (not "*"), and sits in the
   true branch of an Fn::If (no grant on an empty key parameter); every function's role has one.
4. Each IAM statement that allows RDS actions grants only rds:DescribeDBInstances and
   rds:DescribeDBClusters, on this account's instances and clusters in the stack's region (not
   "*"), and sits in the true branch of an Fn::If (only when master secrets are configured).
"""

import json
import re
import sys

FUNCTION_NAME_LIMIT = 64
STACK_NAME_LIMIT = 128
# Upper bounds of the pseudo parameters a name may contain (the real values are shorter).
PSEUDO_MAX = {
    "AWS::StackName": STACK_NAME_LIMIT,
    "AWS::AccountId": 12,
    "AWS::Region": 20,
    "AWS::Partition": 16,
    "AWS::URLSuffix": 24,
}
KMS_ACTIONS = {"kms:decrypt", "kms:describekey", "kms:generatedatakey"}
RDS_ACTIONS = {"rds:describedbinstances", "rds:describedbclusters"}
RDS_RESOURCE = re.compile(r"arn:\$\{AWS::Partition\}:rds:\$\{AWS::Region\}:\$\{AWS::AccountId\}:(db|cluster):\*")
VIA_SERVICE = {
    "secretsmanager.${AWS::Region}.${AWS::URLSuffix}",
    "secretsmanager.${AWS::Region}.amazonaws.com",
}
SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


class Unbounded(Exception):
    pass


def max_length(expr, parameters):
    """The longest string `expr` can evaluate to; Unbounded if that cannot be known."""
    if isinstance(expr, str):
        return len(expr)
    if isinstance(expr, dict) and len(expr) == 1:
        (function, argument), = expr.items()
        if function == "Ref":
            return variable_length(argument, parameters)
        if function == "Fn::Sub":
            template, variables = (argument, {}) if isinstance(argument, str) else argument
            total = len(SUB_VARIABLE.sub("", template)) - template.count("${!")
            for name in SUB_VARIABLE.findall(template):
                total += (max_length(variables[name], parameters) if name in variables
                          else variable_length(name, parameters))
            return total
        if function == "Fn::Join":
            separator, items = argument
            if not isinstance(items, list):
                raise Unbounded(f"Fn::Join over {json.dumps(items)}")
            lengths = [max_length(item, parameters) for item in items]
            return sum(lengths) + len(separator) * max(len(lengths) - 1, 0)
        if function == "Fn::If":
            return max(max_length(argument[1], parameters), max_length(argument[2], parameters))
    raise Unbounded(json.dumps(expr))


def variable_length(name, parameters):
    if name in PSEUDO_MAX:
        return PSEUDO_MAX[name]
    parameter = parameters.get(name)
    if parameter is None:
        raise Unbounded(f"${{{name}}} (not a parameter: a resource's name or attribute)")
    if "AllowedValues" in parameter:
        return max(len(str(value)) for value in parameter["AllowedValues"])
    if "MaxLength" in parameter:
        return int(parameter["MaxLength"])
    raise Unbounded(f"parameter {name} has neither MaxLength nor AllowedValues")


def as_template(expr):
    """A name expression as an Fn::Sub template string, to compare two names; None if it is not
    a plain string, a Ref or a one-argument Fn::Sub."""
    if isinstance(expr, str):
        return expr.replace("${", "${!")
    if isinstance(expr, dict) and len(expr) == 1:
        (function, argument), = expr.items()
        if function == "Ref" and isinstance(argument, str):
            return "${" + argument + "}"
        if function == "Fn::Sub" and isinstance(argument, str):
            return argument
    return None


def check_function_names(resources, parameters, failures):
    functions = {name: r for name, r in resources.items() if r.get("Type") == "AWS::Lambda::Function"}
    if not functions:
        failures.append("no AWS::Lambda::Function in the template: nothing to check")
    generated = 0
    for name, resource in functions.items():
        function_name = resource.get("Properties", {}).get("FunctionName")
        if function_name is None:
            generated += 1
            continue
        try:
            longest = max_length(function_name, parameters)
        except Unbounded as why:
            failures.append(f"{name}: FunctionName {json.dumps(function_name)} has no length bound: {why}")
            continue
        if longest > FUNCTION_NAME_LIMIT:
            failures.append(
                f"{name}: FunctionName {json.dumps(function_name)} is up to {longest} characters with a "
                f"{STACK_NAME_LIMIT}-character stack name; Lambda allows {FUNCTION_NAME_LIMIT} "
                "(drop FunctionName and let CloudFormation generate it)")
    return len(functions), generated


def check_log_groups(resources, failures):
    log_groups = {}
    for name, resource in resources.items():
        if resource.get("Type") == "AWS::Logs::LogGroup":
            log_groups[name] = as_template(resource.get("Properties", {}).get("LogGroupName"))
    created = {template for template in log_groups.values() if template is not None}
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        properties = resource.get("Properties", {})
        function_name = properties.get("FunctionName")
        own = as_template(function_name) if function_name is not None else "${" + name + "}"
        if own is None:
            failures.append(f"{name}: cannot compare FunctionName {json.dumps(function_name)} with log group names")
            continue
        expected = "/aws/lambda/" + own
        configured = properties.get("LoggingConfig", {}).get("LogGroup")
        if configured is None:
            actual = expected
        elif isinstance(configured, dict) and configured.get("Ref") in log_groups:
            actual = log_groups[configured["Ref"]]
        else:
            actual = as_template(configured)
        if actual != expected:
            failures.append(f"{name}: logs to {actual!r}, not to /aws/lambda/<its name> ({expected!r})")
        elif expected not in created:
            failures.append(f"{name}: the template creates no log group {expected!r} (no retention)")


def values(expr):
    """Condition values as ("sub", template) or ("ref", name) pairs; ("other", json) otherwise.
    Both branches of an Fn::If count."""
    if isinstance(expr, list):
        return [value for item in expr for value in values(item)]
    if isinstance(expr, dict) and len(expr) == 1:
        (function, argument), = expr.items()
        if function == "Fn::If":
            return values(argument[1]) + values(argument[2])
        if function == "Ref" and isinstance(argument, str) and argument != "AWS::NoValue":
            return [("ref", argument)]
        if function == "Fn::Sub" and isinstance(argument, str):
            return [("sub", argument)]
    if isinstance(expr, str):
        return [("sub", expr)]
    return [("other", json.dumps(expr))]


def actions(statement):
    listed = statement.get("Action", [])
    return [value.lower() for kind, value in values(listed) if kind == "sub"]


def statements(node, path, in_if):
    """Every IAM statement below `node`, with its path and whether it sits in an Fn::If's true
    branch."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield node, path, in_if
            return
        for key, child in node.items():
            if key == "Fn::If" and isinstance(child, list) and len(child) == 3:
                yield from statements(child[1], f"{path}/Fn::If[{child[0]}]", True)
                yield from statements(child[2], f"{path}/Fn::If[{child[0]}]:else", in_if)
            else:
                yield from statements(child, f"{path}/{key}", in_if)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from statements(child, f"{path}[{index}]", in_if)


def grants_kms(statement):
    if statement.get("Effect") != "Allow":
        return False
    if "NotAction" in statement:
        return True
    return any(action == "*" or action.startswith("kms:") for action in actions(statement))


def condition_values(statement, operator, key):
    block = statement.get("Condition", {}).get(operator, {})
    for name, value in block.items():
        if name.lower() == key.lower():
            return values(value)
    return None


def check_kms_statement(where, statement, in_if, failures):
    granted = set(actions(statement))
    if "NotAction" in statement or not granted <= KMS_ACTIONS:
        failures.append(f"{where}: grants {sorted(granted) or 'NotAction'}; only {sorted(KMS_ACTIONS)} belong in a KMS statement")
    resources = values(statement.get("Resource", []))
    if not resources or any(kind == "sub" and "*" in value for kind, value in resources):
        failures.append(f"{where}: Resource {json.dumps(statement.get('Resource'))} is not one key")
    if not in_if:
        failures.append(f"{where}: not inside an Fn::If (the key parameter may be empty)")
    via = condition_values(statement, "StringEquals", "kms:ViaService")
    if via is None:
        failures.append(f"{where}: no StringEquals kms:ViaService condition (Secrets Manager only)")
    elif not via or any(kind != "sub" or value not in VIA_SERVICE for kind, value in via):
        failures.append(f"{where}: kms:ViaService {via} is not secretsmanager.${{AWS::Region}}.${{AWS::URLSuffix}}")
    secret_arns = None
    for operator in ("StringEquals", "StringLike"):
        found = condition_values(statement, operator, "kms:EncryptionContext:SecretARN")
        if found is not None:
            secret_arns = (secret_arns or []) + found
    if secret_arns is None:
        failures.append(f"{where}: no StringEquals/StringLike kms:EncryptionContext:SecretARN condition")
    else:
        for kind, value in secret_arns or [("other", "nothing")]:
            shape = SUB_VARIABLE.sub("X", value) if kind == "sub" else ""
            scoped = kind == "ref" or re.fullmatch(r"arn:[^:*]+:secretsmanager:[^:*]+:[^:*]+:secret:.+", shape)
            if not scoped:
                failures.append(f"{where}: kms:EncryptionContext:SecretARN {value!r} is not a secret ARN or a parameter")


def iam_statements(resources):
    """Every IAM statement of the template's roles and policies: (statement, path, in_if, the
    resource's type and name, its properties)."""
    for name, resource in resources.items():
        kind = resource.get("Type")
        if kind not in ("AWS::IAM::Role", "AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        properties = resource.get("Properties", {})
        documents = properties.get("Policies", []) if kind == "AWS::IAM::Role" else properties.get("PolicyDocument", {})
        for statement, path, in_if in statements(documents, name, False):
            yield statement, path, in_if, kind, name, properties


def check_kms(resources, failures):
    roles_with_kms = set()
    count = 0
    for statement, path, in_if, kind, name, properties in iam_statements(resources):
        if not grants_kms(statement):
            continue
        count += 1
        check_kms_statement(path, statement, in_if, failures)
        if kind == "AWS::IAM::Role":
            roles_with_kms.add(name)
        else:
            for role in [properties.get("RoleName")] + properties.get("Roles", []):
                if isinstance(role, dict) and "Ref" in role:
                    roles_with_kms.add(role["Ref"])
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        role = resource.get("Properties", {}).get("Role")
        role_name = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
        if role_name not in roles_with_kms:
            failures.append(f"{name}: its role {role_name} has no KMS statement (a customer managed key could not be used)")
    return count


def check_rds(resources, failures):
    """Rule 4; the number of RDS statements."""
    count = 0
    for statement, where, in_if, _, _, _ in iam_statements(resources):
        granted = set(actions(statement))
        grants_rds = "NotAction" in statement or any(a == "*" or a.startswith("rds:") for a in granted)
        if statement.get("Effect") != "Allow" or not grants_rds:
            continue
        count += 1
        if "NotAction" in statement or not granted <= RDS_ACTIONS:
            failures.append(f"{where}: grants {sorted(granted) or 'NotAction'}; only {sorted(RDS_ACTIONS)} belong in an RDS statement")
        resources_granted = values(statement.get("Resource", []))
        if not resources_granted or any(kind != "sub" or not RDS_RESOURCE.fullmatch(value)
                                        for kind, value in resources_granted):
            failures.append(f"{where}: Resource {json.dumps(statement.get('Resource'))} is not this account's RDS instances and clusters")
        if not in_if:
            failures.append(f"{where}: an RDS statement not inside an Fn::If (it belongs only to functions with master secrets)")
    return count


def check(template):
    """The broken rules of a translated template, and what was counted: (failures, functions,
    functions named by CloudFormation, KMS statements, RDS statements)."""
    resources = template.get("Resources", {})
    parameters = template.get("Parameters", {})
    failures = []
    functions, generated = check_function_names(resources, parameters, failures)
    check_log_groups(resources, failures)
    kms = check_kms(resources, failures)
    rds = check_rds(resources, failures)
    return failures, functions, generated, kms, rds


def main(path):
    with open(path, encoding="utf-8") as handle:
        template = json.load(handle)
    failures, functions, generated, kms, rds = check(template)
    for failure in failures:
        print(f"template rule broken: {failure}")
    if failures:
        print(f"template rules: {len(failures)} broken in {path}")
        return 1
    print(f"template rules: {functions} functions fit {FUNCTION_NAME_LIMIT} characters for any stack name "
          f"({generated} named by CloudFormation) and log to /aws/lambda/<name>; {kms} KMS statements "
          f"limited to Secrets Manager and secret ARNs; {rds} RDS statements read-only, on this account's "
          "databases, only with master secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
