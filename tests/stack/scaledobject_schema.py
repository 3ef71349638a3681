"""Our own JSON Schemas of the KEDA objects the stack emits: ScaledObject (keda.sh/v1alpha1) and InterceptorRoute.

Written by hand for this project from the field lists of the pinned releases, not copied from them:
- ScaledObject: KEDA 2.20.2's CRD as chart keda 2.20.2 installs it (kedacore/charts tag v2.20.2,
  keda/templates/crds/crd-scaledobjects.yaml), with the bounds only the released CRD has (stabilizationWindowSeconds
  0..3600), and the Prometheus and external trigger parameters of kedacore/keda v2.20.2 (pkg/scalers/
  prometheus_scaler.go, external_scaler.go: the `keda:"name=..."` tags). Policy periods are bounded as
  autoscaling/v2 HPAScalingPolicy requires (1..1800 s): the CRD does not check them, the HPA KEDA creates does.
- InterceptorRoute: http.keda.sh/v1beta1 of kedacore/http-add-on v0.15.0 (operator/apis/http/v1beta1/
  interceptorroute_types.go, its kubebuilder markers), the fields a client may set.

Stricter than the API server on purpose: every object whose fields we list refuses others (additionalProperties
false, as `kubectl --validate=strict` would), so a misspelt key fails here instead of being pruned in the cluster.
The CRD's CEL rules are not JSON Schema: SPEC_CEL_RULES holds their text for the tests to evaluate.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

SCALED_OBJECT_API_VERSION = "keda.sh/v1alpha1"
INTERCEPTOR_ROUTE_API_VERSION = "http.keda.sh/v1beta1"

INT32: Schema = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}


def _int32(minimum: int | None = None, maximum: int | None = None) -> Schema:
    schema = dict(INT32)
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _closed(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these fields allowed."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
#: The ObjectMeta fields a client sets on create (the server fills the rest).
OBJECT_META: Schema = _closed(
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
    required=("name", "namespace"),
)

#: Kubernetes' int-or-string quantity pattern, as the CRD gives `tolerance`.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
HPA_POLICY: Schema = _closed(
    {
        "type": {"type": "string", "enum": ["Pods", "Percent"]},
        "value": _int32(minimum=1),
        "periodSeconds": _int32(minimum=1, maximum=1800),
    },
    required=("type", "value", "periodSeconds"),
)
HPA_RULES: Schema = _closed(
    {
        "policies": {"type": "array", "items": HPA_POLICY},
        "selectPolicy": {"type": "string", "enum": ["Max", "Min", "Disabled"]},
        "stabilizationWindowSeconds": _int32(minimum=0, maximum=3600),
        "tolerance": {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": QUANTITY_PATTERN}]},
    }
)
ADVANCED: Schema = _closed(
    {
        "restoreToOriginalReplicaCount": {"type": "boolean"},
        "horizontalPodAutoscalerConfig": _closed(
            {
                "name": {"type": "string"},
                "behavior": _closed({"scaleUp": HPA_RULES, "scaleDown": HPA_RULES}),
            }
        ),
        "scalingModifiers": _closed(
            {
                "formula": {"type": "string"},
                "target": {"type": "string"},
                "activationTarget": {"type": "string"},
                "metricType": {"type": "string", "enum": ["AverageValue", "Value"]},
            }
        ),
    }
)
FALLBACK: Schema = _closed(
    {
        "failureThreshold": _int32(minimum=0),
        "replicas": _int32(minimum=0),
        "behavior": {
            "type": "string",
            "enum": [
                "static",
                "currentReplicas",
                "currentReplicasIfHigher",
                "currentReplicasIfLower",
                "scalingModifiers",
            ],
        },
    },
    required=("failureThreshold", "replicas"),
)

#: A float written as text, as KEDA parses thresholds (strconv.ParseFloat).
FLOAT_TEXT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
BOOL_TEXT = r"^(true|false|True|False|TRUE|FALSE|1|0|t|f|T|F)$"
#: Parameters of the prometheus scaler (KEDA 2.20.2), all strings in trigger metadata. `metricName` is gone.
PROMETHEUS_METADATA: Schema = _closed(
    {
        "serverAddress": {"type": "string", "pattern": r"^https?://"},
        "query": {"type": "string", "minLength": 1},
        "queryParameters": {"type": "string"},
        "threshold": {"type": "string", "pattern": FLOAT_TEXT},
        "activationThreshold": {"type": "string", "pattern": FLOAT_TEXT},
        "namespace": {"type": "string"},
        "customHeaders": {"type": "string"},
        "ignoreNullValues": {"type": "string", "pattern": BOOL_TEXT},
        "unsafeSsl": {"type": "string", "pattern": BOOL_TEXT},
        "timeout": {"type": "string"},
        "awsRegion": {"type": "string"},
        "identityOwner": {"type": "string"},
    },
    required=("serverAddress", "query", "threshold"),
)
#: The external(-push) scaler's own parameters, plus what the HTTP add-on's scaler reads from the rest of the
#: metadata (KEDA passes it through): the InterceptorRoute (or the deprecated HTTPScaledObject) it reports on.
EXTERNAL_PUSH_METADATA: Schema = _closed(
    {
        "scalerAddress": {"type": "string", "pattern": r"^[a-z0-9.-]+:[0-9]{1,5}$"},
        "enableTLS": {"type": "string", "pattern": BOOL_TEXT},
        "unsafeSsl": {"type": "string", "pattern": BOOL_TEXT},
        "interceptorRoute": {"type": "string", "minLength": 1},
        "httpScaledObject": {"type": "string", "minLength": 1},
    },
    required=("scalerAddress",),
)


def _metadata_for(trigger_type: str, metadata: Schema) -> Schema:
    return {"if": {"properties": {"type": {"const": trigger_type}}}, "then": {"properties": {"metadata": metadata}}}


TRIGGER: Schema = {
    **_closed(
        {
            # The CRD takes any scaler type (minLength 1); ours are only these two, anything else is a mistake.
            "type": {"type": "string", "enum": ["prometheus", "external-push"]},
            "name": {"type": "string"},
            "metadata": STRING_MAP,  # the CRD: map[string]string
            "metricType": {"type": "string", "enum": ["AverageValue", "Value", "Utilization"]},
            "useCachedMetrics": {"type": "boolean"},
            "authenticationRef": _closed(
                {
                    "name": {"type": "string"},
                    "kind": {"type": "string", "enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                },
                required=("name",),
            ),
        },
        required=("type", "metadata"),
    ),
    "allOf": [
        _metadata_for("prometheus", PROMETHEUS_METADATA),
        _metadata_for("external-push", EXTERNAL_PUSH_METADATA),
    ],
}

SCALED_OBJECT_SPEC: Schema = _closed(
    {
        "scaleTargetRef": _closed(
            {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "name": {"type": "string", "minLength": 1},
                "envSourceContainerName": {"type": "string"},
            },
            required=("name",),
        ),
        "pollingInterval": _int32(minimum=1),
        "cooldownPeriod": _int32(minimum=0),
        "initialCooldownPeriod": _int32(minimum=0),
        "idleReplicaCount": _int32(minimum=0),
        "minReplicaCount": _int32(minimum=0),
        "maxReplicaCount": _int32(minimum=1),
        "advanced": ADVANCED,
        "fallback": FALLBACK,
        "triggers": {"type": "array", "minItems": 1, "items": TRIGGER},
    },
    required=("scaleTargetRef", "triggers"),
)

SCALED_OBJECT: Schema = _closed(
    {
        "apiVersion": {"const": SCALED_OBJECT_API_VERSION},  # the only served and storage version in 2.20.2
        "kind": {"const": "ScaledObject"},
        "metadata": OBJECT_META,
        "spec": SCALED_OBJECT_SPEC,
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)

#: The CEL rules (x-kubernetes-validations) of the ScaledObject CRD's `spec`, as the released CRD spells them.
SPEC_CEL_RULES: dict[str, str] = {
    "minReplicaCount must be less than or equal to maxReplicaCount": (
        "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)"
    ),
}

# --- InterceptorRoute (HTTP add-on v0.15.0) ---------------------------------------------------------------------

#: A metav1.Duration as Go's time.ParseDuration reads it ("3600s", "1h30m", "0s").
DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
SERVICE_PORT_ONE_OF = [
    {"required": ["port"], "not": {"required": ["portName"]}},
    {"required": ["portName"], "not": {"required": ["port"]}},
]

INTERCEPTOR_ROUTE_SPEC: Schema = _closed(
    {
        "target": {
            **_closed(
                {"service": {"type": "string", "minLength": 1}, "port": PORT, "portName": {"type": "string"}},
                required=("service",),
            ),
            # CEL: has(self.port) != has(self.portName)
            "oneOf": SERVICE_PORT_ONE_OF,
        },
        "rules": {
            "type": "array",
            "items": _closed(
                {
                    "hosts": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
                    "paths": {
                        "type": "array",
                        "items": _closed({"value": {"type": "string", "minLength": 1}}, required=("value",)),
                    },
                    "headers": {
                        "type": "array",
                        "items": _closed(
                            {"name": {"type": "string", "minLength": 1}, "value": {"type": "string"}},
                            required=("name",),
                        ),
                    },
                }
            ),
        },
        "scalingMetric": {
            **_closed(
                {
                    "concurrency": _closed({"targetValue": _int32(minimum=1)}, required=("targetValue",)),
                    "requestRate": _closed(
                        {"targetValue": _int32(minimum=1), "window": DURATION, "granularity": DURATION},
                        required=("targetValue",),
                    ),
                }
            ),
            # CEL: has(self.concurrency) || has(self.requestRate)
            "anyOf": [{"required": ["concurrency"]}, {"required": ["requestRate"]}],
        },
        "timeouts": _closed({"readiness": DURATION, "request": DURATION, "responseHeader": DURATION}),
        "coldStart": {"type": "object"},  # never emitted: requests wait for the model instead
    },
    required=("target", "scalingMetric"),
)

INTERCEPTOR_ROUTE: Schema = _closed(
    {
        "apiVersion": {"const": INTERCEPTOR_ROUTE_API_VERSION},
        "kind": {"const": "InterceptorRoute"},
        "metadata": OBJECT_META,
        "spec": INTERCEPTOR_ROUTE_SPEC,
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)
