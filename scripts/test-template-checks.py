"""Proves that scripts/check-template-notifications.py and scripts/check-template-rules.py can
fail: each case breaks one thing in a copy of a translated template and the checker must report it
(with the expected words), while the unbroken translations pass. `python scripts/test-template-checks.py [--verbose] MODE=TEMPLATE.json ...`
(scripts/check-template passes the four translations it makes); --verbose prints each case caught."""

import copy
import importlib.util
import pathlib
import sys

spec = importlib.util.spec_from_file_location(
    "notifications", pathlib.Path(__file__).with_name("check-template-notifications.py"))
notifications = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notifications)
spec = importlib.util.spec_from_file_location(
    "rules", pathlib.Path(__file__).with_name("check-template-rules.py"))
rules = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rules)

ALARM = "PostgresSingleUserStepFailedAlarm"
RULE = "RotationFailureRule"
POLICY = "RotationNotificationTopicPolicy"


def resources(t):
    return t["Resources"]


def alarm(t):
    return resources(t)[ALARM]["Properties"]


def rule(t):
    return resources(t)[RULE]["Properties"]


def statements(t):
    return resources(t)[POLICY]["Properties"]["PolicyDocument"]["Statement"]


def alarm_statement(t):
    return statements(t)[1]["Fn::If"][1]


def set_(target, key, value):
    target[key] = value


def statements_output(t, edit):
    value = t["Outputs"]["NotificationTopicPolicyStatements"]["Value"]["Fn::If"][1]
    value["Fn::Sub"] = edit(value["Fn::Sub"])


# (what is broken, mode, how, words the report must contain)
CASES = [
    ("an alarm without its Condition", "none",
     lambda t: resources(t)[ALARM].pop("Condition"), f"{ALARM} (AWS::CloudWatch::Alarm) exists"),
    ("Notify always true", "none",
     lambda t: set_(t["Conditions"], "Notify", {"Fn::Equals": ["a", "a"]}), f"{RULE} (AWS::Events::Rule) exists"),
    ("the topic created with an existing one", "existing-topic",
     lambda t: resources(t)["RotationNotificationTopic"].pop("Condition"), "AWS::SNS::Topic) exists"),
    ("alarms without metrics", "rule-only",
     lambda t: set_(t["Conditions"], "AlarmOnSteps", {"Condition": "Notify"}), "(AWS::CloudWatch::Alarm) exists"),
    ("a condition the checker cannot evaluate", "none",
     lambda t: set_(t["Conditions"], "HasMetrics", {"Fn::Contains": [["a"], "a"]}), "cannot evaluate"),
    ("an alarm missing", "created-topic",
     lambda t: resources(t).pop(ALARM), "PostgresSingleUserFunction: 0 StepFailed alarms"),
    ("two alarms on one function", "created-topic",
     lambda t: set_(alarm(t)["Dimensions"][0], "Value", {"Ref": "SshKeyFunction"}), "SshKeyFunction: 2 StepFailed"),
    ("a second dimension", "created-topic",
     lambda t: alarm(t)["Dimensions"].append({"Name": "step", "Value": "setSecret"}), "dimensions"),
    ("another metric", "created-topic", lambda t: set_(alarm(t), "MetricName", "StepSucceeded"), "MetricName"),
    ("a fixed namespace", "created-topic", lambda t: set_(alarm(t), "Namespace", "SecretRotor"), "Namespace"),
    ("threshold 2", "created-topic", lambda t: set_(alarm(t), "Threshold", 2), "Threshold"),
    ("> instead of >=", "created-topic",
     lambda t: set_(alarm(t), "ComparisonOperator", "GreaterThanThreshold"), "ComparisonOperator"),
    ("a 1-minute period", "created-topic", lambda t: set_(alarm(t), "Period", 60), "Period"),
    ("Average", "created-topic", lambda t: set_(alarm(t), "Statistic", "Average"), "Statistic"),
    ("missing data breaching", "created-topic",
     lambda t: set_(alarm(t), "TreatMissingData", "breaching"), "TreatMissingData"),
    ("2 of 3 datapoints", "created-topic", lambda t: set_(alarm(t), "DatapointsToAlarm", 2), "DatapointsToAlarm"),
    ("no OK notification", "created-topic", lambda t: alarm(t).pop("OKActions"), "OKActions"),
    ("alarm to another topic", "existing-topic",
     lambda t: set_(alarm(t), "AlarmActions", ["arn:aws:sns:eu-west-1:123456789012:other"]), "AlarmActions"),
    ("RotationAbandoned not matched", "created-topic",
     lambda t: rule(t)["EventPattern"]["detail"]["eventName"].remove("RotationAbandoned"), "EventPattern"),
    ("API calls instead of service events", "created-topic",
     lambda t: set_(rule(t)["EventPattern"], "detail-type", ["AWS API Call via CloudTrail"]), "EventPattern"),
    ("rule disabled", "created-topic", lambda t: set_(rule(t), "State", "DISABLED"), "State"),
    ("rule to another topic", "created-topic",
     lambda t: set_(rule(t)["Targets"][0], "Arn", "arn:aws:sns:eu-west-1:123456789012:other"), "target"),
    ("message without the secret", "created-topic",
     lambda t: rule(t)["Targets"][0]["InputTransformer"]["InputPathsMap"].pop("secret"), "SecretId"),
    ("message without the event", "existing-topic",
     lambda t: set_(rule(t)["Targets"][0]["InputTransformer"], "InputTemplate", '"rotation failed"'), "eventName"),
    ("anyone may publish", "created-topic",
     lambda t: statements(t).append({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sns:Publish",
                                     "Resource": {"Ref": "RotationNotificationTopic"}}), "Principal"),
    ("another service may publish", "created-topic",
     lambda t: set_(statements(t)[0], "Principal", {"Service": ["events.amazonaws.com", "s3.amazonaws.com"]}),
     "Principal"),
    ("the rule's statement without a condition", "created-topic",
     lambda t: statements(t)[0].pop("Condition"), "events.amazonaws.com may publish for ['anyone']"),
    ("sns:* granted", "created-topic", lambda t: set_(statements(t)[0], "Action", "sns:*"), "Action"),
    ("a statement for another topic", "created-topic",
     lambda t: set_(statements(t)[0], "Resource", "*"), "Resource"),
    ("an alarm left out of the policy", "created-topic",
     lambda t: alarm_statement(t)["Condition"]["ArnEquals"]["aws:SourceArn"].pop(), "may not publish for"),
    ("alarms' statement dropped", "created-topic",
     lambda t: statements(t).pop(), "cloudwatch.amazonaws.com may not publish"),
    ("cloudwatch allowed without alarms", "rule-only",
     lambda t: set_(statements(t)[1], "Fn::If", ["Notify"] + statements(t)[1]["Fn::If"][1:]), "Principal"),
    ("statements output lets anyone publish", "existing-topic",
     lambda t: statements_output(t, lambda text: text.replace('{"Service":"cloudwatch.amazonaws.com"}', '"*"')),
     "Principal"),
    ("statements output without the rule", "existing-topic",
     lambda t: statements_output(t, lambda text: text.replace("${RotationFailureRule.Arn}", "*")),
     "events.amazonaws.com"),
    ("no topic output", "created-topic",
     lambda t: t["Outputs"].pop("RotationNotificationTopicArn"), "created topic's ARN"),
    ("no rule output", "existing-topic", lambda t: t["Outputs"].pop("RotationFailureRuleArn"), "rule's ARN"),
    ("an output for a resource that does not exist", "none",
     lambda t: t["Outputs"]["RotationFailureRuleArn"].pop("Condition"), "does not exist in this deployment"),
    ("no role output", "none", lambda t: t["Outputs"].pop("SshKeyRoleArn"), "execution role"),
    ("no METRICS_NAMESPACE", "none",
     lambda t: resources(t)["MysqlSingleUserFunction"]["Properties"]["Environment"]["Variables"].pop(
         "METRICS_NAMESPACE"), "METRICS_NAMESPACE"),
]


def kms_statement(t):
    """The first KMS statement of the template's roles (the object itself, to break)."""
    for name, resource in resources(t).items():
        if resource.get("Type") == "AWS::IAM::Role":
            for statement, _, _ in rules.statements(resource["Properties"].get("Policies", []), name, False):
                if rules.grants_kms(statement):
                    return statement
    raise LookupError("no KMS statement in the template")


def rds_statement(t):
    """The first RDS statement of the template's roles."""
    for name, resource in resources(t).items():
        if resource.get("Type") == "AWS::IAM::Role":
            for statement, _, _ in rules.statements(resource["Properties"].get("Policies", []), name, False):
                if any(action.startswith("rds:") for action in rules.actions(statement)):
                    return statement
    raise LookupError("no RDS statement in the template")


def rds_for_every_function(t):
    """An RDS statement in a role's policies outside any Fn::If."""
    resources(t)["PostgresSingleUserRole"]["Properties"]["Policies"].append({
        "PolicyName": "describe-databases",
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [dict(rds_statement(t))]}})


def pop_condition(statement, operator, key):
    block = statement["Condition"][operator]
    block.pop(next(name for name in block if name.lower() == key.lower()))
    if not block:
        statement["Condition"].pop(operator)


# check-template-rules.py: (what is broken, how, words the report must contain), on the default
# translation.
RULE_CASES = [
    ("a function named after the stack", lambda t: set_(
        resources(t)["PostgresAlternatingUsersFunction"]["Properties"], "FunctionName",
        {"Fn::Sub": "${AWS::StackName}-postgres-alternating-users"}), "FunctionName"),
    ("KMS without kms:ViaService",
     lambda t: pop_condition(kms_statement(t), "StringEquals", "kms:ViaService"), "kms:ViaService"),
    ("KMS for any encryption context", lambda t: [
        pop_condition(kms_statement(t), operator, "kms:EncryptionContext:SecretARN")
        for operator in ("StringEquals", "StringLike")
        if any(name.lower() == "kms:encryptioncontext:secretarn"
               for name in kms_statement(t).get("Condition", {}).get(operator, {}))],
     "kms:EncryptionContext:SecretARN"),
    ("KMS on every key", lambda t: set_(kms_statement(t), "Resource", "*"), "is not one key"),
    ("KMS granting kms:*", lambda t: set_(kms_statement(t), "Action", "kms:*"), "belong in a KMS statement"),
    ("RDS granting rds:*", lambda t: set_(rds_statement(t), "Action", "rds:*"), "belong in an RDS statement"),
    ("RDS on every resource", lambda t: set_(rds_statement(t), "Resource", "*"), "RDS instances and clusters"),
    ("RDS for functions without masters", rds_for_every_function, "not inside an Fn::If"),
]


def main(arguments):
    import json
    verbose = "--verbose" in arguments
    arguments = [argument for argument in arguments if argument != "--verbose"]
    templates = {}
    for argument in arguments:
        mode, _, path = argument.partition("=")
        with open(path, encoding="utf-8") as handle:
            templates[mode] = json.load(handle)
    broken = []
    for mode, template in templates.items():
        failures = notifications.check(template, mode)
        if failures:
            broken.append(f"the unbroken {mode} translation fails: {failures}")
    run = 0
    for what, mode, change, words in CASES:
        if mode not in templates:
            broken.append(f"{what}: no {mode} translation given")
            continue
        template = copy.deepcopy(templates[mode])
        change(template)
        failures = notifications.check(template, mode)
        run += 1
        if not any(words in failure for failure in failures):
            broken.append(f"{what} ({mode}): not reported as {words!r}; the checker said {failures}")
        elif verbose:
            print(f"caught: {what} ({mode}): {next(f for f in failures if words in f)}")
    if "none" in templates:
        failures = rules.check(templates["none"])[0]
        if failures:
            broken.append(f"the unbroken translation breaks the rules: {failures}")
        for what, change, words in RULE_CASES:
            template = copy.deepcopy(templates["none"])
            change(template)
            failures = rules.check(template)[0]
            run += 1
            if not any(words in failure for failure in failures):
                broken.append(f"{what} (rules): not reported as {words!r}; the checker said {failures}")
            elif verbose:
                print(f"caught: {what} (rules): {next(f for f in failures if words in f)}")
    else:
        broken.append("no default (none) translation given for the rules' cases")
    for line in broken:
        print(f"check test FAILED: {line}")
    if broken:
        return 1
    print(f"template checks: {run} broken copies caught, {len(templates)} real translations pass")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
