"""Read template.yaml, and make the copy that moto can deploy.

moto runs no Lambda code and swallows stream records behind an event source mapping it cannot
invoke, so the copy drops the functions' stream and API ``Events`` (we call the handlers
directly; schedules stay, as EventBridge rules that never fire on their own) and the
layer (the handlers import ``redflag`` from this checkout). What moto's CloudFormation ignores
(TTL spec, stream filter criteria, batch size) is read from the template itself. What it cannot
create at all (CloudWatch alarms, SNS subscriptions) it is taught below, through moto's own backends.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


_TAUGHT: list[type] = []
_TRANSLATED: dict[tuple[int, str], tuple[Any, dict[str, Any]]] = {}  # (template version, parameters) -> copy


def _teach_moto_cloudformation() -> None:
    """moto 5.2's CloudFormation has no AWS::CloudWatch::Alarm, AWS::SNS::Subscription,
    AWS::SNS::TopicPolicy, AWS::SecretsManager::Secret, AWS::Lambda::EventInvokeConfig,
    AWS::Logs::MetricFilter, AWS::ApiGateway::Account nor the SES configuration set and its event
    destination: it
    warns, skips them, and its describe_stack_resources then fails. Rather than drop the alarms
    and the ops subscription from the moto copy (and test nothing), create them through moto's
    cloudwatch and sns backends, as CloudFormation would. Defined on first use (moto's models
    register as CloudFormationModel subclasses, cached on first lookup: the caches are cleared)."""
    from moto.cloudformation import parsing
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.common_models import CloudFormationModel
    from moto.sns.models import sns_backends

    if "AWS::CloudWatch::Alarm" in parsing.get_model_map():
        return

    Create = Callable[[str, dict[str, Any], str, str], str]  # (name, properties, account, region) -> physical id

    def model(cfn_type: str, create: Create, name_type: str = "") -> type:
        """A resource type moto's CloudFormation creates with ``create`` (moto registers only direct
        subclasses of CloudFormationModel: one is defined per type)."""

        class Model(CloudFormationModel):
            def __init__(self, physical_id: str) -> None:
                self.physical_resource_id = physical_id

            @classmethod
            def has_cfn_attr(cls, attr: str) -> bool:
                return False

            @staticmethod
            def cloudformation_name_type() -> str:
                return name_type

            @staticmethod
            def cloudformation_type() -> str:
                return cfn_type

            @classmethod
            def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kw):
                props = cloudformation_json.get("Properties", {})
                return cls(create(resource_name, props, account_id, region_name))

        return Model

    def alarm(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=name,
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p["EvaluationPeriods"]),
            datapoints_to_alarm=p.get("DatapointsToAlarm"),
            period=int(p["Period"]) if "Period" in p else None,
            threshold=float(p["Threshold"]),
            statistic=p.get("Statistic"),
            description=p.get("AlarmDescription"),
            dimensions=p.get("Dimensions", []),
            alarm_actions=p.get("AlarmActions", []),
            ok_actions=p.get("OKActions", []),
            treat_missing_data=p.get("TreatMissingData"),
        )
        return name

    def subscription(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        return sns_backends[account_id][region_name].subscribe(p["TopicArn"], p["Endpoint"], p["Protocol"]).arn

    def secret(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        """GenerateSecretString: a random value, as Secrets Manager makes."""
        import secrets

        from moto.secretsmanager.models import secretsmanager_backends

        length = int(p.get("GenerateSecretString", {}).get("PasswordLength", 32))
        value = p.get("SecretString") or secrets.token_urlsafe(length)[:length]
        made = secretsmanager_backends[account_id][region_name].create_secret(
            name=name, secret_string=value, secret_binary=None, description=p.get("Description"),
            tags=[], kms_key_id=None, client_request_token=None, replica_regions=[],
            force_overwrite=False,
        )  # fmt: skip
        return json.loads(made)["ARN"]

    def event_invoke_config(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        """Retries and the on-failure destination of asynchronous invokes, put on the function."""
        from moto.awslambda.models import lambda_backends

        config = {k: v for k, v in p.items() if k not in ("FunctionName", "Qualifier")}
        lambda_backends[account_id][region_name].put_function_event_invoke_config(p["FunctionName"], config)
        return f"{p['FunctionName']}:$LATEST"

    def metric_filter(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        from moto.logs.models import logs_backends

        # the API's shape: MetricName -> metricName, ...
        transformations = [{k[0].lower() + k[1:]: v for k, v in t.items()} for t in p["MetricTransformations"]]
        logs_backends[account_id][region_name].put_metric_filter(
            name, p["FilterPattern"], p["LogGroupName"], transformations
        )
        return name

    def apigateway_account(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        """The region's API Gateway logging role: an account setting (the API itself the harness plays)."""
        from moto.apigateway.models import apigateway_backends

        patch = [{"op": "replace", "path": "/cloudwatchRoleArn", "value": p["CloudWatchRoleArn"]}]
        apigateway_backends[account_id][region_name].update_account(patch)
        return f"{account_id}-{region_name}"

    def topic_policy(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        for arn in p["Topics"]:
            sns_backends[account_id][region_name].set_topic_attribute(arn, "policy", json.dumps(p["PolicyDocument"]))
        return name

    def configuration_set(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        """SES v2's configuration set: reputation metrics, sending and suppression options as given."""
        from moto.sesv2.models import sesv2_backends

        sesv2_backends[account_id][region_name].create_configuration_set(
            configuration_set_name=name, tracking_options=p.get("TrackingOptions", {}),
            delivery_options=p.get("DeliveryOptions", {}), reputation_options=p.get("ReputationOptions", {}),
            sending_options=p.get("SendingOptions", {}), tags=p.get("Tags", []),
            suppression_options=p.get("SuppressionOptions", {}), vdm_options=p.get("VdmOptions", {}),
        )  # fmt: skip
        return name

    def event_destination(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        """Kept in moto's SES backend, where the stand-in's event publishing reads it (stack.publish_ses_event)."""
        from moto.ses.models import ses_backends

        ses_backends[account_id][region_name].create_configuration_set_event_destination(
            p["ConfigurationSetName"], p["EventDestination"]
        )
        return f"{p['ConfigurationSetName']}|{p['EventDestination']['Name']}"

    _TAUGHT.extend(  # held here: moto finds them through CloudFormationModel.__subclasses__(), weak references
        [
            model("AWS::CloudWatch::Alarm", alarm, "AlarmName"),
            model("AWS::SNS::Subscription", subscription),
            model("AWS::SecretsManager::Secret", secret, "Name"),
            model("AWS::Lambda::EventInvokeConfig", event_invoke_config),
            model("AWS::Logs::MetricFilter", metric_filter, "FilterName"),
            model("AWS::ApiGateway::Account", apigateway_account),
            model("AWS::SNS::TopicPolicy", topic_policy),
            model("AWS::SES::ConfigurationSet", configuration_set, "Name"),
            model("AWS::SES::ConfigurationSetEventDestination", event_destination),
        ]
    )

    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


LOCAL_API_ID = "localapi"  # the API the stand-in plays: https://localapi.execute-api.<region>.amazonaws.com/Prod


def _without_api_references(node: Any) -> Any:
    """The copy has no implicit API (its Events are dropped): what names it (a function's
    UNSUBSCRIBE_URL) names the API the stand-in plays instead."""
    if isinstance(node, dict):
        if node == {"Ref": "ServerlessRestApi"}:
            return LOCAL_API_ID
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return {"Fn::Sub": node["Fn::Sub"].replace("${ServerlessRestApi}", LOCAL_API_ID)}
        return {k: _without_api_references(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_api_references(v) for v in node]
    return node


@lru_cache(maxsize=8)
def _parsed(path: Path, mtime_ns: int) -> dict[str, Any]:
    return yaml_parse(path.read_text())


class ApiRoute:
    """One route of the deployed API: ``/v1/users/{user_id}`` matches ``/v1/users/u-1`` (one segment each)."""

    def __init__(self, path: str, method: str, function: str, api_key: bool) -> None:
        self.path = path
        self.method = method
        self.function = function
        self.api_key = api_key
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
        self._pattern = re.compile(f"^{pattern}$")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when this route takes the request, else None."""
        if method.upper() != self.method:
            return None
        found = self._pattern.match(path)
        return found.groupdict() if found else None


class Template:
    def __init__(self, path: Path = TEMPLATE) -> None:
        self.path = path
        # parsed once per version of the file (PyYAML is slow on it); each Template gets its own copy
        self.version = path.stat().st_mtime_ns
        self.sam: dict[str, Any] = copy.deepcopy(_parsed(path, self.version))

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.sam["Resources"].items() if v["Type"] == type_}

    @cached_property
    def functions(self) -> dict[str, Path]:
        """Logical id -> the function's source folder (``functions/<name>``)."""
        return {
            name: ROOT / res["Properties"]["CodeUri"]
            for name, res in self.resources("AWS::Serverless::Function").items()
        }

    def function_event(self, function: str, event_type: str) -> dict[str, Any]:
        events = self.sam["Resources"][function]["Properties"].get("Events", {})
        return next(e["Properties"] for e in events.values() if e["Type"] == event_type)

    @cached_property
    def api_routes(self) -> list[ApiRoute]:
        """Every route of the deployed API, as the template's Api events declare it: path (with its
        ``{name}`` parameters), method, the function it invokes, and whether it needs the API key
        (``Globals.Api.Auth.ApiKeyRequired``, unless the event says otherwise)."""
        default = bool(self.sam.get("Globals", {}).get("Api", {}).get("Auth", {}).get("ApiKeyRequired", False))
        routes = []
        for name, res in self.resources("AWS::Serverless::Function").items():
            for event in res["Properties"].get("Events", {}).values():
                if event["Type"] != "Api":
                    continue
                p = event["Properties"]
                keyed = p.get("Auth", {}).get("ApiKeyRequired", default)
                routes.append(ApiRoute(p["Path"], p["Method"].upper(), name, bool(keyed)))
        return routes

    def function_timeout(self, function: str) -> float:
        props = self.sam["Resources"][function]["Properties"]
        return float(props.get("Timeout", self.sam.get("Globals", {}).get("Function", {}).get("Timeout", 3)))

    def stream_filters(self, function: str) -> list[dict[str, Any]]:
        props = self.function_event(function, "DynamoDB")
        return [json.loads(f["Pattern"]) for f in props.get("FilterCriteria", {}).get("Filters", [])]

    def table(self, logical_id: str) -> dict[str, Any]:
        return self.sam["Resources"][logical_id]["Properties"]

    def function_for(self, folder: str) -> str:
        return next(name for name, path in self.functions.items() if path.name == folder)

    def condition(self, name: str, parameters: dict[str, str]) -> bool:
        """A template condition's value for these parameters (defaults for the rest): the
        Fn::Equals/Not/And/Or over parameter Refs that the template's conditions use."""
        values = {k: str(p.get("Default", "")) for k, p in self.sam.get("Parameters", {}).items()} | parameters

        def value(node: Any) -> Any:
            if not isinstance(node, dict):
                return str(node)
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return values[arg]
            if fn == "Condition":
                return value(self.sam["Conditions"][arg])
            args = [value(a) for a in arg]
            if fn == "Fn::Equals":
                return args[0] == args[1]
            if fn == "Fn::Not":
                return not args[0]
            if fn == "Fn::And":
                return all(args)
            if fn == "Fn::Or":
                return any(args)
            raise ValueError(f"{fn} in a condition: not evaluated for the moto copy")

        return value(self.sam["Conditions"][name])

    def moto_copy(self, parameters: dict[str, str]) -> dict[str, Any]:
        """The translated copy moto deploys, translated once per template version and parameters."""
        _teach_moto_cloudformation()
        key = (self.version, json.dumps(parameters, sort_keys=True))
        if key not in _TRANSLATED:
            _TRANSLATED.clear()  # one template version at a time is enough
            _TRANSLATED[key] = (self.sam, self._translate(parameters))
        return copy.deepcopy(_TRANSLATED[key][1])

    def _translate(self, parameters: dict[str, str]) -> dict[str, Any]:
        sam = _without_api_references(copy.deepcopy(self.sam))
        # moto skips a resource whose Condition is false, but then lists it as None and its
        # describe_stack_resources fails: leave such resources out of the copy instead
        for name, res in list(sam["Resources"].items()):
            if "Condition" in res and not self.condition(res["Condition"], parameters):
                del sam["Resources"][name]
        sam.get("Globals", {}).get("Function", {}).pop("Layers", None)
        sam.get("Globals", {}).pop("Api", None)
        sam.pop("Outputs", None)  # they name the implicit API, which needs the dropped Events
        for name in list(sam["Resources"]):
            res = sam["Resources"][name]
            if res["Type"] == "AWS::Serverless::LayerVersion":
                del sam["Resources"][name]
            elif res["Type"] == "AWS::Serverless::Function":
                props = res["Properties"]
                # keep schedules (moto creates the rule, so its State is checked); drop the stream
                # mapping (it would swallow records) and the API (the harness plays API Gateway)
                events = {k: e for k, e in props.pop("Events", {}).items() if e["Type"] == "Schedule"}
                if events:
                    props["Events"] = events
                props.pop("CodeUri", None)
                props["InlineCode"] = "def lambda_handler(event, context):\n    raise NotImplementedError\n"
        return transform(sam, parameters, _NoManagedPolicies())
