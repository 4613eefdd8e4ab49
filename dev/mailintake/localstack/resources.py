"""Creates the stack's stateful resources on the local moto server, straight from template.yaml, and
writes ``.local/stack.env``: the functions' environment with every reference resolved to the local names.

Nothing here lists the stack's resources by hand: every DynamoDB table, S3 bucket, SQS queue, Scheduler
schedule group, IAM role, SNS topic and subscription, CloudWatch alarm and dashboard of the template is
created, named ``mailintake-<LogicalId>`` (the template's own name where it gives one).
"""

from __future__ import annotations

import graphlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError

from mailintake.localstack import motoserver
from mailintake.localstack.dovecot import DovecotInfo

STACK_NAME = "mailintake"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
PARTITION = "aws"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"

# Template outputs that are not in the functions' environment but which the code needs, by env name.
OUTPUT_ENV = {
    "SchedulerRoleArn": "MAILINTAKE_SCHEDULER_ROLE_ARN",
    "FetchFunctionArn": "MAILINTAKE_FETCH_FUNCTION_ARN",
}

_PSEUDO_PARAMETERS = {
    "AWS::StackName": STACK_NAME,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/local",
}


class LocalStackError(RuntimeError):
    """The template holds something the local stack cannot reproduce."""


# --- template loading -------------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation's short-form tags (``!Ref X``) as their long form dicts."""


_SHORT_TAGS = (
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "If", "ImportValue", "Join", "Not", "Or",
    "Select", "Split", "Sub", "Transform", "ToJsonString", "Length",
)  # fmt: skip


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


def _function_constructor(name: str) -> Callable[[yaml.SafeLoader, yaml.Node], Any]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        return {name: _construct(loader, node)}

    return construct


def _get_att(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    value = _construct(loader, node)
    if isinstance(value, str):
        # Short form "Resource.Attribute"; attribute names may contain dots themselves.
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {"Fn::GetAtt": value}


CfnLoader.add_constructor("!Ref", _function_constructor("Ref"))
CfnLoader.add_constructor("!Condition", _function_constructor("Condition"))
CfnLoader.add_constructor("!GetAtt", _get_att)
for _tag in _SHORT_TAGS:
    CfnLoader.add_constructor(f"!{_tag}", _function_constructor(f"Fn::{_tag}"))


def load_template(root: Path | str) -> dict[str, Any]:
    """``<root>/template.yaml`` as plain data, short tags turned into their long form."""
    path = Path(root) / "template.yaml"
    with path.open() as f:
        template = yaml.load(f, Loader=CfnLoader)  # CfnLoader derives from SafeLoader
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise LocalStackError(f"{path} has no Resources")
    return template


# --- names and intrinsic functions ------------------------------------------------------------------


@dataclass
class Physical:
    """What ``Ref`` and ``Fn::GetAtt`` give for one local resource."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


def _is_fifo(properties: Mapping[str, Any]) -> bool:
    return str(properties.get("FifoQueue", "")).lower() == "true"


def local_name(logical_id: str, resource: Mapping[str, Any]) -> str:
    """The local physical name of a resource whose name does not come from an expression."""
    kind = resource.get("Type", "")
    properties = resource.get("Properties") or {}
    if kind == "AWS::S3::Bucket":
        return f"{STACK_NAME}-{logical_id}".lower()
    if kind == "AWS::SQS::Queue" and _is_fifo(properties):
        return f"{STACK_NAME}-{logical_id}.fifo"
    return f"{STACK_NAME}-{logical_id}"


_NO_VALUE = object()
_SUB_RE = re.compile(r"\$\{([^}]*)\}")
# The intrinsic functions of conditions (and Fn::If, which takes one).
_CONDITION_FUNCTIONS = frozenset({"Fn::If", "Condition", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"})


class Resolver:
    """Evaluates the intrinsic functions of a template against the local resources."""

    def __init__(self, template: Mapping[str, Any], physical: Mapping[str, Physical] | None = None) -> None:
        self.template = template
        self.physical: dict[str, Physical] = dict(physical or {})

    @property
    def resources(self) -> Mapping[str, Any]:
        resources: Mapping[str, Any] = self.template["Resources"]
        return resources

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                    return self._function(key, arg)
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not _NO_VALUE}
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        return value

    def resolve_str(self, value: Any) -> str:
        resolved = self.resolve(value)
        if isinstance(resolved, bool):
            return "true" if resolved else "false"
        if not isinstance(resolved, str | int | float):
            raise LocalStackError(f"expected a scalar, got {resolved!r}")
        return str(resolved)

    def _function(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self.ref(self.resolve_str(arg))
        if key == "Fn::GetAtt":
            resource, attribute = self.resolve(arg) if isinstance(arg, list) else str(arg).split(".", 1)
            return self.get_att(resource, attribute)
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join":
            separator, items = arg
            return str(separator).join(self.resolve_str(item) for item in self.resolve(items))
        if key == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve_str(index))]
        if key == "Fn::Split":
            separator, text = arg
            return self.resolve_str(text).split(str(separator))
        if key in _CONDITION_FUNCTIONS:
            return self._condition_function(key, arg)
        if key == "Fn::FindInMap":
            mapping, first, second = (self.resolve_str(a) for a in arg)
            return self.resolve(self.template["Mappings"][mapping][first][second])
        if key == "Fn::Base64":
            return self.resolve_str(arg)  # it only matters to EC2 user data, which is not local
        if key == "Fn::GetAZs":
            return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
        raise LocalStackError(f"{key} cannot be evaluated locally")

    def _condition_function(self, key: str, arg: Any) -> Any:
        if key == "Fn::If":
            condition, if_true, if_false = arg
            return self.resolve(if_true if self.condition(condition) else if_false)
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = arg
            return self.resolve_str(left) == self.resolve_str(right)
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(item) for item in arg)
        return any(self._truth(item) for item in arg)  # Fn::Or

    def _truth(self, value: Any) -> bool:
        resolved = self.resolve(value)
        if not isinstance(resolved, bool):
            raise LocalStackError(f"expected a condition, got {resolved!r}")
        return resolved

    def condition(self, name: Any) -> bool:
        return self._truth(self.template.get("Conditions", {})[name])

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} escapes a literal ${Literal}
            if name in variables:
                return self.resolve_str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return self.resolve_str(self.get_att(*name.split(".", 1)))
            return self.resolve_str(self.ref(name))

        return _SUB_RE.sub(replace, text)

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in _PSEUDO_PARAMETERS:
            return _PSEUDO_PARAMETERS[name]
        parameters = self.template.get("Parameters") or {}
        if name in parameters:
            if "Default" not in parameters[name]:
                raise LocalStackError(f"parameter {name} has no Default to use locally")
            default = parameters[name]["Default"]
            return self.resolve_str(default) if not isinstance(default, list) else default
        return self._physical(name).ref

    def get_att(self, resource: str, attribute: str) -> str:
        attributes = self._physical(resource).attributes
        if attribute not in attributes:
            raise LocalStackError(f"{resource}.{attribute} has no local value")
        return attributes[attribute]

    def _physical(self, logical_id: str) -> Physical:
        if logical_id in self.physical:
            return self.physical[logical_id]
        if logical_id not in self.resources:
            raise LocalStackError(f"unknown reference {logical_id!r}")
        resource = self.resources[logical_id]
        if resource.get("Type") in _CREATORS:
            raise LocalStackError(f"{logical_id} is referenced before it is created")
        # Resources that do not exist locally (functions, layers, log groups): their names and ARNs are
        # still well-formed, since the code stores or passes them on (e.g. as a schedule's target).
        name = local_name(logical_id, resource)
        attributes = {}
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            attributes["Arn"] = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        return Physical(ref=name, attributes=attributes)


# --- AWS clients ------------------------------------------------------------------------------------


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# --- creators, one per resource type ----------------------------------------------------------------

Creator = Callable[[boto3.session.Session, str, str, Mapping[str, Any], Resolver], Physical]


def _create_table(
    session: boto3.session.Session, endpoint: str, name: str, props: Mapping[str, Any], resolver: Resolver
) -> Physical:
    client = session.client("dynamodb", endpoint_url=endpoint)
    try:
        arn = client.describe_table(TableName=name)["Table"]["TableArn"]
        return Physical(ref=name, attributes={"Arn": arn})
    except client.exceptions.ResourceNotFoundException:
        pass
    kwargs: dict[str, Any] = {"TableName": name}
    for key in ("AttributeDefinitions", "KeySchema", "BillingMode", "ProvisionedThroughput",
                "GlobalSecondaryIndexes", "LocalSecondaryIndexes"):  # fmt: skip
        if key in props:
            kwargs[key] = resolver.resolve(props[key])
    if "SSESpecification" in props:
        # CloudFormation spells the flag SSEEnabled, the API Enabled.
        sse = dict(resolver.resolve(props["SSESpecification"]))
        sse["Enabled"] = str(sse.pop("SSEEnabled", False)).lower() == "true"
        kwargs["SSESpecification"] = sse
    if "StreamSpecification" in props:
        stream = resolver.resolve(props["StreamSpecification"])
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    arn = client.create_table(**kwargs)["TableDescription"]["TableArn"]
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ttl = resolver.resolve(props.get("TimeToLiveSpecification"))
    if ttl and str(ttl.get("Enabled", "")).lower() == "true":
        # The code may rely on expires_at being the TTL attribute, so mirror it; point-in-time recovery
        # and the like change nothing locally and are left out.
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    return Physical(ref=name, attributes={"Arn": arn})


def _create_bucket(
    session: boto3.session.Session, endpoint: str, name: str, props: Mapping[str, Any], resolver: Resolver
) -> Physical:
    client = session.client("s3", endpoint_url=endpoint)
    physical = Physical(
        ref=name,
        attributes={
            "Arn": f"arn:{PARTITION}:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com",
        },
    )
    try:
        client.head_bucket(Bucket=name)
    except ClientError as exc:
        if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        client.create_bucket(Bucket=name)
    # Configured whether or not it was there, as a stack update would: a stack provisioned before the template
    # gained a rule (retention, say) gets it too. Each put replaces the whole configuration it sets.
    encryption = resolver.resolve(props.get("BucketEncryption"))
    if encryption:
        rules: list[Any] = []
        for rule in encryption.get("ServerSideEncryptionConfiguration", []):
            converted: dict[str, Any] = {}
            if "ServerSideEncryptionByDefault" in rule:
                converted["ApplyServerSideEncryptionByDefault"] = rule["ServerSideEncryptionByDefault"]
            if "BucketKeyEnabled" in rule:
                converted["BucketKeyEnabled"] = str(rule["BucketKeyEnabled"]).lower() == "true"
            rules.append(converted)
        sse_config: Any = {"Rules": rules}
        client.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=sse_config)
    public_access = resolver.resolve(props.get("PublicAccessBlockConfiguration"))
    if public_access:
        block: Any = {key: str(value).lower() == "true" for key, value in public_access.items()}
        client.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    ownership = resolver.resolve(props.get("OwnershipControls"))
    if ownership:
        client.put_bucket_ownership_controls(Bucket=name, OwnershipControls=ownership)
    versioning = resolver.resolve(props.get("VersioningConfiguration"))
    if versioning:
        # Versioning changes what the code sees (version ids, delete markers), so it is mirrored.
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    lifecycle = resolver.resolve(props.get("LifecycleConfiguration"))
    if lifecycle:
        # No local run lasts the days they count, but they are put as written, so that a rule S3 would
        # refuse fails here too and a test can read the retention back.
        client.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": [lifecycle_rule(r) for r in lifecycle["Rules"]]})
    return physical


def lifecycle_rule(rule: Mapping[str, Any]) -> Any:
    """One lifecycle rule of AWS::S3::Bucket, in the API's shape (CloudFormation flattens some fields)."""
    converted: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"],
                                 "Filter": {"Prefix": rule.get("Prefix", "")}}
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = str(rule["ExpiredObjectDeleteMarker"]).lower() == "true"
    if expiration:
        converted["Expiration"] = expiration
    if "NoncurrentVersionExpiration" in rule:
        converted["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        converted["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    return converted


# CloudFormation properties of AWS::SQS::Queue that are not queue attributes of the API.
_QUEUE_NON_ATTRIBUTES = {"QueueName", "Tags"}


def _create_queue(
    session: boto3.session.Session, endpoint: str, name: str, props: Mapping[str, Any], resolver: Resolver
) -> Physical:
    client = session.client("sqs", endpoint_url=endpoint)
    try:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
    except client.exceptions.QueueDoesNotExist:
        attributes: dict[Any, str] = {}
        for key, value in props.items():
            if key in _QUEUE_NON_ATTRIBUTES:
                continue
            resolved = resolver.resolve(value)
            if isinstance(resolved, dict | list):
                attributes[key] = json.dumps(resolved)  # RedrivePolicy, RedriveAllowPolicy
            else:
                attributes[key] = resolver.resolve_str(resolved)
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Physical(ref=url, attributes={"Arn": arn, "QueueName": name, "QueueUrl": url})


def _create_schedule_group(
    session: boto3.session.Session, endpoint: str, name: str, props: Mapping[str, Any], resolver: Resolver
) -> Physical:
    client = session.client("scheduler", endpoint_url=endpoint)
    if "Name" in props:
        name = resolver.resolve_str(props["Name"])
    try:
        arn = client.get_schedule_group(Name=name)["Arn"]
    except client.exceptions.ResourceNotFoundException:
        arn = client.create_schedule_group(Name=name)["ScheduleGroupArn"]
    return Physical(ref=name, attributes={"Arn": arn})


def _create_role(
    session: boto3.session.Session, endpoint: str, name: str, props: Mapping[str, Any], resolver: Resolver
) -> Physical:
    client = session.client("iam", endpoint_url=endpoint)
    try:
        role = client.get_role(RoleName=name)["Role"]
    except client.exceptions.NoSuchEntityException:
        role = client.create_role(
            RoleName=name,
            Path=resolver.resolve_str(props.get("Path", "/")),
            AssumeRolePolicyDocument=json.dumps(resolver.resolve(props["AssumeRolePolicyDocument"])),
        )["Role"]
        for policy in resolver.resolve(props.get("Policies", [])):
            client.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )
    return Physical(ref=name, attributes={"Arn": role["Arn"], "RoleId": role["RoleId"]})


def _create_topic(
    session: boto3.session.Session, endpoint: str, name: str, props: Mapping[str, Any], resolver: Resolver
) -> Physical:
    client = session.client("sns", endpoint_url=endpoint)
    if "TopicName" in props:
        name = resolver.resolve_str(props["TopicName"])
    attributes = {key: resolver.resolve_str(props[key]) for key in ("DisplayName", "KmsMasterKeyId") if key in props}
    arn = client.create_topic(Name=name, Attributes=attributes)["TopicArn"]  # idempotent
    return Physical(ref=arn, attributes={"TopicArn": arn, "TopicName": name})


def _create_subscription(
    session: boto3.session.Session, endpoint: str, name: str, props: Mapping[str, Any], resolver: Resolver
) -> Physical:
    client = session.client("sns", endpoint_url=endpoint)
    arn = client.subscribe(TopicArn=resolver.resolve_str(props["TopicArn"]),
                           Protocol=resolver.resolve_str(props["Protocol"]),
                           Endpoint=resolver.resolve_str(props["Endpoint"]))["SubscriptionArn"]
    return Physical(ref=arn)


# Properties of AWS::CloudWatch::Alarm that put_metric_alarm takes under the same name.
_ALARM_FIELDS = ("AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions", "InsufficientDataActions",
                 "MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit",
                 "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData",
                 "EvaluateLowSampleCountPercentile", "Metrics", "ThresholdMetricId")
_NUMBERS = {"Period": int, "EvaluationPeriods": int, "DatapointsToAlarm": int, "Threshold": float}


def _create_alarm(
    session: boto3.session.Session, endpoint: str, name: str, props: Mapping[str, Any], resolver: Resolver
) -> Physical:
    client = session.client("cloudwatch", endpoint_url=endpoint)
    if "AlarmName" in props:
        name = resolver.resolve_str(props["AlarmName"])
    kwargs: dict[str, Any] = {"AlarmName": name}
    for key in _ALARM_FIELDS:
        if key in props:
            value = resolver.resolve(props[key])
            kwargs[key] = _NUMBERS[key](value) if key in _NUMBERS else value
    client.put_metric_alarm(**kwargs)  # creates or updates
    arn = f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"
    return Physical(ref=name, attributes={"Arn": arn})


def _create_dashboard(
    session: boto3.session.Session, endpoint: str, name: str, props: Mapping[str, Any], resolver: Resolver
) -> Physical:
    client = session.client("cloudwatch", endpoint_url=endpoint)
    if "DashboardName" in props:
        name = resolver.resolve_str(props["DashboardName"])
    body = resolver.resolve_str(props["DashboardBody"])
    json.loads(body)  # CloudWatch refuses a body that is not JSON: so does the local stack
    client.put_dashboard(DashboardName=name, DashboardBody=body)
    return Physical(ref=name)


_CREATORS: dict[str, Creator] = {
    "AWS::SNS::Topic": _create_topic,
    "AWS::SNS::Subscription": _create_subscription,
    "AWS::CloudWatch::Alarm": _create_alarm,
    "AWS::CloudWatch::Dashboard": _create_dashboard,
    "AWS::DynamoDB::Table": _create_table,
    "AWS::S3::Bucket": _create_bucket,
    "AWS::SQS::Queue": _create_queue,
    "AWS::Scheduler::ScheduleGroup": _create_schedule_group,
    "AWS::IAM::Role": _create_role,
}


def _references(value: Any) -> Iterator[str]:
    """Logical ids (or parameter names) that ``value`` refers to."""
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                yield arg
            elif key == "Fn::GetAtt":
                yield arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                for name in _SUB_RE.findall(text):
                    yield name.split(".", 1)[0]
                if isinstance(arg, list):
                    yield from _references(arg[1])
            else:
                yield from _references(arg)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def create_resources(root: Path | str, endpoint: str | None = None) -> Resolver:
    """Create every supported resource of the template on moto (idempotent).

    Returns a resolver that knows all local names, for evaluating the template's expressions.
    """
    template = load_template(root)
    endpoint = endpoint or motoserver.endpoint_url()
    resolver = Resolver(template)
    wanted = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") in _CREATORS and _included(resolver, resource)
    }
    # Dependencies first, e.g. a dead-letter queue before the queue whose redrive policy names it.
    order = graphlib.TopologicalSorter[str]()
    for logical_id, resource in wanted.items():
        depends_on = resource.get("DependsOn", [])
        refs = set(_references(resource.get("Properties") or {}))
        refs.update([depends_on] if isinstance(depends_on, str) else depends_on)
        order.add(logical_id, *(ref for ref in refs if ref in wanted))
    session = _session()
    for logical_id in order.static_order():
        resource = wanted[logical_id]
        creator = _CREATORS[resource["Type"]]
        name = local_name(logical_id, resource)
        resolver.physical[logical_id] = creator(
            session, endpoint, name, resource.get("Properties") or {}, resolver
        )
    return resolver


def _included(resolver: Resolver, resource: Mapping[str, Any]) -> bool:
    condition = resource.get("Condition")
    return condition is None or resolver.condition(condition)


# --- stack.env --------------------------------------------------------------------------------------


def stack_env_path(root: Path | str) -> Path:
    return Path(root).resolve() / ".local" / "stack.env"


def stack_env(resolver: Resolver, dovecot: DovecotInfo, endpoint: str | None = None) -> dict[str, str]:
    """The local environment: the functions' Globals variables, AWS settings, outputs and Dovecot."""
    template = resolver.template
    variables = (
        (template.get("Globals") or {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    env = {name: resolver.resolve_str(value) for name, value in variables.items()}
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint or motoserver.endpoint_url(),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
    )
    outputs = template.get("Outputs") or {}
    for output, env_name in OUTPUT_ENV.items():
        if output not in outputs:
            raise LocalStackError(f"template.yaml has no output {output}, needed for {env_name}")
        env[env_name] = resolver.resolve_str(outputs[output]["Value"])
    env.update(dovecot.as_env())
    return env


def write_stack_env(root: Path | str, env: Mapping[str, str]) -> Path:
    """Write ``env`` as ``KEY=VALUE`` lines (no quoting; values are used verbatim) to .local/stack.env."""
    lines = []
    for key, value in env.items():
        if "\n" in value or "\r" in value:
            raise LocalStackError(f"{key} has a line break, which stack.env cannot carry")
        lines.append(f"{key}={value}\n")
    path = stack_env_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
    return path


def read_stack_env(root: Path | str) -> dict[str, str]:
    """The variables of .local/stack.env (``KEY=VALUE`` per line, verbatim; ``#`` lines are comments)."""
    env: dict[str, str] = {}
    for line in stack_env_path(root).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            env[key.strip()] = value
    return env


def provision(root: Path | str, dovecot: DovecotInfo, endpoint: str | None = None) -> dict[str, str]:
    """Create the resources and write stack.env; returns the env written."""
    resolver = create_resources(root, endpoint)
    env = stack_env(resolver, dovecot, endpoint)
    write_stack_env(root, env)
    return env


# --- reset ------------------------------------------------------------------------------------------


def reset(root: Path | str, endpoint: str | None = None) -> None:
    """Empty the tables, buckets and queues (and the schedule groups' schedules), keeping the resources.

    For test isolation: much cheaper than recreating, and names and URLs stay valid.
    """
    resolver = create_resources(root, endpoint)
    endpoint = endpoint or motoserver.endpoint_url()
    session = _session()
    for logical_id, physical in resolver.physical.items():
        kind = resolver.resources[logical_id]["Type"]
        if kind == "AWS::DynamoDB::Table":
            _empty_table(session, endpoint, physical.ref)
        elif kind == "AWS::S3::Bucket":
            _empty_bucket(session, endpoint, physical.ref)
        elif kind == "AWS::SQS::Queue":
            _purge_queue(session, endpoint, physical.ref)
        elif kind == "AWS::Scheduler::ScheduleGroup":
            _empty_schedule_group(session, endpoint, physical.ref)


def _purge_queue(session: boto3.session.Session, endpoint: str, url: str) -> None:
    client = session.client("sqs", endpoint_url=endpoint)
    try:
        client.purge_queue(QueueUrl=url)
    except client.exceptions.PurgeQueueInProgress as exc:
        raise LocalStackError(
            "this moto server enforces one purge per minute: it was not started by mailintake.localstack; "
            "run `python -m mailintake.localstack down` then `up`"
        ) from exc


def _empty_table(session: boto3.session.Session, endpoint: str, name: str) -> None:
    client = session.client("dynamodb", endpoint_url=endpoint)
    keys = [k["AttributeName"] for k in client.describe_table(TableName=name)["Table"]["KeySchema"]]
    table = session.resource("dynamodb", endpoint_url=endpoint).Table(name)
    scan_kwargs: dict[str, Any] = {
        "ProjectionExpression": ", ".join(f"#k{i}" for i in range(len(keys))),
        "ExpressionAttributeNames": {f"#k{i}": key for i, key in enumerate(keys)},
    }
    with table.batch_writer() as batch:
        while True:
            page = table.scan(**scan_kwargs)
            for item in page.get("Items", []):
                batch.delete_item(Key={key: item[key] for key in keys})
            if "LastEvaluatedKey" not in page:
                break
            scan_kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _empty_bucket(session: boto3.session.Session, endpoint: str, name: str) -> None:
    client = session.client("s3", endpoint_url=endpoint)
    # Versions and delete markers too: a versioned bucket is only empty once they are gone.
    for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
        objects = [
            {"Key": entry["Key"], "VersionId": entry["VersionId"]}
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if objects:
            client.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})  # type: ignore[typeddict-item]
    for listing in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": entry["Key"]} for entry in listing.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})  # type: ignore[typeddict-item]


def _empty_schedule_group(session: boto3.session.Session, endpoint: str, name: str) -> None:
    client = session.client("scheduler", endpoint_url=endpoint)
    for page in client.get_paginator("list_schedules").paginate(GroupName=name):
        for schedule in page.get("Schedules", []):
            client.delete_schedule(GroupName=name, Name=schedule["Name"])
