"""Checks "seeing failures" on a translated template (scripts/translate-template.py output) for
one deployment: `python scripts/check-template-notifications.py TEMPLATE.json EXPECT`. The
deployment's parameter values are the template's Defaults (translate with --parameter to change
them); the Conditions are evaluated for them here (Fn::Equals, Fn::Not, Fn::And, Fn::Or,
Condition; Ref and Fn::Join as values), and so is every Fn::If. Exits 1 on any breach.

EXPECT says what must exist after that evaluation, and nothing else of the kind may:
  none           no alarm, rule, topic or topic policy (the defaults)
  created-topic  a StepFailed alarm per function, the rule, one topic, its policy
  existing-topic a StepFailed alarm per function, the rule targeting NotificationTopicArn, no topic
  rule-only      CreateNotificationTopic without metrics: the rule, the topic, its policy, no alarm

Always: every function gets METRICS_NAMESPACE = Ref MetricsNamespace, and every function's role
ARN is an output; every existing output and resource references only existing resources.
An alarm: namespace Ref MetricsNamespace, StepFailed, dimension function = Ref the function only,
Sum >= 1 over one 300 s period, missing data not breaching, AlarmActions and OKActions = the topic.
The rule: Secrets Manager's RotationFailed and RotationAbandoned via CloudTrail, enabled, one
target (the topic) whose InputTransformer names the secret and the event. The topic policy (or,
for an existing topic, the NotificationTopicPolicyStatements output) lets only
events.amazonaws.com publish with aws:SourceArn = the rule, and cloudwatch.amazonaws.com with
aws:SourceArn = exactly the alarms (or aws:SourceAccount), only when there are alarms.
Outputs: the created topic's ARN, the rule's ARN.
"""

import json
import sys

EXPECTATIONS = {
    "none": {"alarms": False, "rule": False, "topic": None},
    "created-topic": {"alarms": True, "rule": True, "topic": "created"},
    "existing-topic": {"alarms": True, "rule": True, "topic": "existing"},
    "rule-only": {"alarms": False, "rule": True, "topic": "created"},
}
NOTIFICATION_TYPES = ("AWS::CloudWatch::Alarm", "AWS::Events::Rule", "AWS::SNS::Topic",
                      "AWS::SNS::TopicPolicy", "AWS::SNS::Subscription")
EXISTING_TOPIC_PARAMETER = "NotificationTopicArn"
STATEMENTS_OUTPUT = "NotificationTopicPolicyStatements"
EVENT_PATTERN = {
    "source": ["aws.secretsmanager"],
    "detail-type": ["AWS Service Event via CloudTrail"],
    "detail": {"eventSource": ["secretsmanager.amazonaws.com"],
               "eventName": ["RotationAbandoned", "RotationFailed"]},
}
ALARM = {"MetricName": "StepFailed", "Statistic": "Sum", "Period": "300", "EvaluationPeriods": "1",
         "Threshold": "1", "ComparisonOperator": "GreaterThanOrEqualToThreshold",
         "TreatMissingData": "notBreaching", "Namespace": {"Ref": "MetricsNamespace"}}
PSEUDO = {"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
          "AWS::StackName": "secret-rotor", "AWS::URLSuffix": "amazonaws.com"}


class Unsupported(Exception):
    pass


class Deployment:
    """The template's Conditions and Fn::Ifs, evaluated for the parameters' Defaults."""

    def __init__(self, template):
        self.conditions = template.get("Conditions", {})
        self.parameters = dict(PSEUDO)
        for name, parameter in template.get("Parameters", {}).items():
            if "Default" not in parameter:
                raise Unsupported(f"parameter {name} has no Default (translate with --parameter {name}=...)")
            value = str(parameter["Default"])
            self.parameters[name] = value.split(",") if parameter.get("Type") == "CommaDelimitedList" else value
        self.cache = {}

    def condition(self, name):
        if name not in self.cache:
            if name not in self.conditions:
                raise Unsupported(f"condition {name} is not declared")
            self.cache[name] = None  # a cycle reads None and fails below
            self.cache[name] = self.test(self.conditions[name])
        if self.cache[name] is None:
            raise Unsupported(f"condition {name} refers to itself")
        return self.cache[name]

    def test(self, expr):
        function, argument = one_key(expr)
        if function == "Fn::Equals":
            return self.value(argument[0]) == self.value(argument[1])
        if function == "Fn::Not":
            return not self.test(argument[0])
        if function == "Fn::And":
            return all(self.test(item) for item in argument)
        if function == "Fn::Or":
            return any(self.test(item) for item in argument)
        if function == "Condition":
            return self.condition(argument)
        raise Unsupported(f"condition function {json.dumps(expr)}")

    def value(self, expr):
        if isinstance(expr, (str, int, float, bool)):
            return str(expr).lower() if isinstance(expr, bool) else str(expr)
        function, argument = one_key(expr)
        if function == "Ref" and argument in self.parameters:
            return self.parameters[argument]
        if function == "Fn::Join":
            items = self.value(argument[1]) if isinstance(argument[1], dict) else [self.value(i) for i in argument[1]]
            return argument[0].join(items)
        raise Unsupported(f"value in a condition {json.dumps(expr)}")

    def exists(self, entry):
        return "Condition" not in entry or self.condition(entry["Condition"])

    def resolve(self, expr):
        """`expr` with every Fn::If replaced by its branch and AWS::NoValue dropped."""
        if isinstance(expr, list):
            return [item for item in map(self.resolve, expr) if item != NO_VALUE]
        if isinstance(expr, dict):
            if len(expr) == 1 and "Fn::If" in expr:
                name, then, otherwise = expr["Fn::If"]
                return self.resolve(then if self.condition(name) else otherwise)
            resolved = {key: self.resolve(value) for key, value in expr.items()}
            return {key: value for key, value in resolved.items() if value != NO_VALUE}
        return expr


NO_VALUE = {"Ref": "AWS::NoValue"}


def one_key(expr):
    if not isinstance(expr, dict) or len(expr) != 1:
        raise Unsupported(json.dumps(expr))
    return next(iter(expr.items()))


def canonical(expr):
    """A reference as Fn::Sub text ("${Name}", "${Name.Arn}"), to compare structured and Sub forms."""
    if isinstance(expr, list):
        return [canonical(item) for item in expr]
    if isinstance(expr, dict) and len(expr) == 1:
        function, argument = next(iter(expr.items()))
        if function == "Ref":
            return "${" + argument + "}"
        if function == "Fn::GetAtt":
            return "${" + (argument if isinstance(argument, str) else ".".join(argument)) + "}"
        if function == "Fn::Sub" and isinstance(argument, str):
            return argument
    return expr if isinstance(expr, str) else json.dumps(expr, sort_keys=True)


def as_list(value):
    return value if isinstance(value, list) else [value]


def references(expr):
    """Names of the resources and parameters `expr` refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    if isinstance(expr, list):
        return {name for item in expr for name in references(item)}
    if not isinstance(expr, dict):
        return set()
    found = set()
    for key, value in expr.items():
        if key == "Ref" and isinstance(value, str):
            found.add(value)
        elif key == "Fn::GetAtt":
            found.add((value.split(".")[0] if isinstance(value, str) else value[0]))
        elif key == "Fn::Sub":
            text, variables = (value, {}) if isinstance(value, str) else value
            for part in text.split("${")[1:]:
                name = part.split("}")[0].split(".")[0]
                if not name.startswith("!") and name not in variables:
                    found.add(name)
            found |= references(variables)
        else:
            found |= references(value)
    return found


def check_dangling(deployment, resources, outputs, parameters, failures):
    known = set(resources) | set(parameters) | set(PSEUDO) | {"AWS::NoValue", "AWS::StackId", "AWS::NotificationARNs"}
    for kind, entries in (("resource", resources), ("output", outputs)):
        for name, entry in entries.items():
            for missing in sorted(references(deployment.resolve(entry)) - known):
                failures.append(f"{kind} {name} refers to {missing}, which does not exist in this deployment")


def check_functions(functions, outputs, failures):
    output_values = [canonical(output.get("Value")) for output in outputs.values()]
    for name, function in functions.items():
        variables = function.get("Properties", {}).get("Environment", {}).get("Variables", {})
        if variables.get("METRICS_NAMESPACE") != {"Ref": "MetricsNamespace"}:
            failures.append(f"{name}: METRICS_NAMESPACE is {json.dumps(variables.get('METRICS_NAMESPACE'))}, "
                            "not Ref MetricsNamespace")
        role = function.get("Properties", {}).get("Role")
        role_arn = canonical(role) if isinstance(role, dict) and "Fn::GetAtt" in role else None
        if role_arn is None or role_arn not in output_values:
            failures.append(f"{name}: no output gives its execution role's ARN ({role_arn})")


def check_alarms(functions, alarms, topic, failures):
    by_function = {}
    for name, alarm in alarms.items():
        properties = alarm.get("Properties", {})
        dimensions = properties.get("Dimensions", [])
        function = dimensions[0].get("Value", {}).get("Ref") if len(dimensions) == 1 and isinstance(
            dimensions[0].get("Value"), dict) else None
        if len(dimensions) != 1 or dimensions[0].get("Name") != "function" or function not in functions:
            failures.append(f"{name}: dimensions {json.dumps(dimensions)} are not [function = Ref <a function>]")
            continue
        by_function.setdefault(function, []).append(name)
        for key, expected in ALARM.items():
            actual = properties.get(key)
            if (str(actual) if not isinstance(expected, dict) and actual is not None else actual) != expected:
                failures.append(f"{name}: {key} is {json.dumps(actual)}, not {json.dumps(expected)}")
        if str(properties.get("DatapointsToAlarm", 1)) != "1":
            failures.append(f"{name}: DatapointsToAlarm is {properties['DatapointsToAlarm']}, not 1")
        for key in ("AlarmActions", "OKActions"):
            if canonical(as_list(properties.get(key, []))) != [topic]:
                failures.append(f"{name}: {key} {json.dumps(properties.get(key))} are not the topic {topic}")
    for function in functions:
        count = len(by_function.get(function, []))
        if count != 1:
            failures.append(f"{function}: {count} StepFailed alarms on its function dimension, not 1")


def check_rule(name, rule, topic, failures):
    properties = rule.get("Properties", {})
    pattern = json.loads(json.dumps(properties.get("EventPattern", {})))
    if isinstance(pattern.get("detail", {}).get("eventName"), list):
        pattern["detail"]["eventName"].sort()
    if pattern != EVENT_PATTERN:
        failures.append(f"{name}: EventPattern {json.dumps(properties.get('EventPattern'))} is not "
                        f"{json.dumps(EVENT_PATTERN)}")
    if properties.get("State") != "ENABLED":
        failures.append(f"{name}: State is {properties.get('State')!r}, not ENABLED")
    targets = properties.get("Targets", [])
    if len(targets) != 1:
        failures.append(f"{name}: {len(targets)} targets, not 1 (the topic)")
        return
    target = targets[0]
    if canonical(target.get("Arn")) != topic:
        failures.append(f"{name}: target {json.dumps(target.get('Arn'))} is not the topic {topic}")
    transformer = target.get("InputTransformer", {})
    paths = {path: key for key, path in transformer.get("InputPathsMap", {}).items()}
    for path in ("$.detail.additionalEventData.SecretId", "$.detail.eventName"):
        key = paths.get(path)
        if key is None or f"<{key}>" not in transformer.get("InputTemplate", ""):
            failures.append(f"{name}: the InputTransformer's message does not name {path}")


def condition_values(statement, operators, key):
    found = None
    for operator, block in statement.get("Condition", {}).items():
        if operator not in operators:
            continue
        for name, value in block.items():
            if name.lower() == key.lower():
                found = (found or set()) | set(canonical(as_list(value)))
    return found


def check_publishers(where, statements, topic, rule, alarm_arns, failures):
    """Only the rule (events.amazonaws.com) and exactly the alarms (cloudwatch.amazonaws.com) may
    publish to `topic`; both are allowed."""
    allowed = {"events.amazonaws.com": {rule}}
    if alarm_arns:
        allowed["cloudwatch.amazonaws.com"] = set(alarm_arns)
    granted = {service: set() for service in allowed}
    for index, statement in enumerate(as_list(statements)):
        at = f"{where} statement {statement.get('Sid', index)}"
        if statement.get("Effect") == "Deny":
            continue
        if {"NotAction", "NotPrincipal", "NotResource"} & set(statement):
            failures.append(f"{at}: NotAction/NotPrincipal/NotResource in an Allow")
            continue
        principal = statement.get("Principal")
        services = as_list(principal.get("Service", [])) if isinstance(principal, dict) and set(principal) == {"Service"} else None
        if not services or any(service not in allowed for service in services):
            failures.append(f"{at}: Principal {json.dumps(principal)} is not one of {sorted(allowed)}")
            continue
        if [action.lower() for action in as_list(statement.get("Action"))] != ["sns:publish"]:
            failures.append(f"{at}: Action {json.dumps(statement.get('Action'))} is not sns:Publish")
        if canonical(as_list(statement.get("Resource"))) != [topic]:
            failures.append(f"{at}: Resource {json.dumps(statement.get('Resource'))} is not the topic {topic}")
        sources = condition_values(statement, ("ArnEquals", "StringEquals"), "aws:SourceArn")
        account = condition_values(statement, ("StringEquals",), "aws:SourceAccount")
        for service in services:
            if sources is not None and sources <= allowed[service]:
                granted[service] |= sources
            elif service == "cloudwatch.amazonaws.com" and sources is None and account == {"${AWS::AccountId}"}:
                granted[service] |= allowed[service]
            else:
                failures.append(f"{at}: {service} may publish for {sorted(sources or account or ['anyone'])}, "
                                f"not only {sorted(allowed[service])}")
    for service, sources in allowed.items():
        if granted[service] != sources:
            failures.append(f"{where}: {service} may not publish for {sorted(sources - granted[service])}")


def check(template, expect):
    """The breaches of `expect` (a key of EXPECTATIONS) in `template`, as messages."""
    wanted = EXPECTATIONS[expect]
    failures = []
    try:
        deployment = Deployment(template)
        for name in deployment.conditions:  # all of them, so that none is left unchecked
            deployment.condition(name)
        resources = {name: deployment.resolve(resource) for name, resource in template.get("Resources", {}).items()
                     if deployment.exists(resource)}
        outputs = {name: deployment.resolve(output) for name, output in template.get("Outputs", {}).items()
                   if deployment.exists(output)}
    except Unsupported as why:
        return [f"cannot evaluate the template's conditions: {why}"]
    parameters = template.get("Parameters", {})
    check_dangling(deployment, resources, outputs, parameters, failures)
    of_type = lambda kind: {name: r for name, r in resources.items() if r.get("Type") == kind}
    functions = of_type("AWS::Lambda::Function")
    if not functions:
        failures.append("no AWS::Lambda::Function in the template: nothing to check")
    check_functions(functions, outputs, failures)
    output_values = {name: canonical(output.get("Value")) for name, output in outputs.items()}

    topics = of_type("AWS::SNS::Topic")
    topic = None
    if wanted["topic"] == "created":
        if len(topics) != 1:
            failures.append(f"{len(topics)} SNS topics exist, not 1")
        topic = "${" + next(iter(topics), "<no topic>") + "}"
        if topic not in output_values.values():
            failures.append(f"no output gives the created topic's ARN ({topic})")
    elif wanted["topic"] == "existing":
        topic = "${" + EXISTING_TOPIC_PARAMETER + "}"
        if not deployment.parameters.get(EXISTING_TOPIC_PARAMETER):
            failures.append(f"{EXISTING_TOPIC_PARAMETER} is empty: not a deployment with an existing topic")
    unwanted = [n for n, r in resources.items() if r.get("Type") in NOTIFICATION_TYPES
                and not ((r["Type"] == "AWS::CloudWatch::Alarm" and wanted["alarms"])
                         or (r["Type"] == "AWS::Events::Rule" and wanted["rule"])
                         or (r["Type"] in ("AWS::SNS::Topic", "AWS::SNS::TopicPolicy") and wanted["topic"] == "created"))]
    for name in unwanted:
        failures.append(f"{name} ({resources[name]['Type']}) exists, but '{expect}' creates none")

    alarms = of_type("AWS::CloudWatch::Alarm")
    if wanted["alarms"]:
        check_alarms(functions, alarms, topic, failures)
    rules = of_type("AWS::Events::Rule")
    rule_arn = None
    if wanted["rule"]:
        if len(rules) != 1:
            failures.append(f"{len(rules)} EventBridge rules exist, not 1")
        for name, rule in rules.items():
            rule_arn = "${" + name + ".Arn}"
            check_rule(name, rule, topic, failures)
            if rule_arn not in output_values.values():
                failures.append(f"no output gives the rule's ARN ({rule_arn})")
    alarm_arns = ["${" + name + ".Arn}" for name in alarms if wanted["alarms"]]

    policies = of_type("AWS::SNS::TopicPolicy")
    if wanted["topic"] == "created":
        if len(policies) != 1:
            failures.append(f"{len(policies)} topic policies exist, not 1")
        for name, policy in policies.items():
            if canonical(as_list(policy.get("Properties", {}).get("Topics"))) != [topic]:
                failures.append(f"{name}: Topics is not [{topic}]")
            statements = policy.get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])
            check_publishers(name, statements, topic, rule_arn, alarm_arns, failures)
    if wanted["topic"] == "existing":
        text = canonical(outputs.get(STATEMENTS_OUTPUT, {}).get("Value"))
        try:
            statements = json.loads(text)
        except (TypeError, ValueError):
            failures.append(f"output {STATEMENTS_OUTPUT} is not a JSON list of statements: {text!r}")
        else:
            check_publishers(f"output {STATEMENTS_OUTPUT}", statements, topic, rule_arn, alarm_arns, failures)
    elif STATEMENTS_OUTPUT in outputs:
        failures.append(f"output {STATEMENTS_OUTPUT} exists, but '{expect}' uses no existing topic")
    return failures


def main(path, expect):
    with open(path, encoding="utf-8") as handle:
        template = json.load(handle)
    failures = check(template, expect)
    for failure in failures:
        print(f"notification rule broken: {failure}")
    if failures:
        print(f"notifications ({expect}): {len(failures)} broken in {path}")
        return 1
    wanted = EXPECTATIONS[expect]
    made = [what for what, present in (("a StepFailed alarm per function", wanted["alarms"]),
                                       ("the rotation-failure rule", wanted["rule"]),
                                       (f"the {wanted['topic']} topic", wanted["topic"])) if present]
    print(f"notifications ({expect}): {', '.join(made) or 'no alarm, rule or topic'}; "
          "METRICS_NAMESPACE and role outputs on every function")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in EXPECTATIONS:
        sys.exit(f"usage: {sys.argv[0]} TEMPLATE.json {{{','.join(EXPECTATIONS)}}}")
    sys.exit(main(sys.argv[1], sys.argv[2]))
