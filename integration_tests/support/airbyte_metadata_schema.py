"""Airbyte's metadata.yaml schema (metadata_service's ConnectorMetadataDefinitionV0) as JSON Schema, for the fields a
destination uses: the required ones, the enums, the breakingChanges entries, and no field Airbyte does not know
(its model forbids extra fields, so a misspelt one fails the upload). Nested objects this connector does not use
are only typed."""

STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
OBJECT = {"type": "object"}
DATE = {"type": "string", "format": "date"}
URL = {"type": "string", "pattern": r"^https?://\S+$"}
UUID = {"type": "string", "pattern": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}


def _closed(properties: dict, required: tuple = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "required": list(required), "properties": properties}


BREAKING_CHANGE = _closed(
    {
        "upgradeDeadline": DATE,
        "message": STRING,
        "deadlineAction": {"enum": ["auto_upgrade", "disable"]},
        "migrationDocumentationUrl": URL,
        "scopedImpact": {"type": "array", "minItems": 1},
    },
    required=("upgradeDeadline", "message"),
)

REGISTRY_OVERRIDE = _closed(
    {
        "enabled": BOOLEAN, "name": STRING, "dockerRepository": STRING, "dockerImageTag": STRING, "supportsDbt": BOOLEAN,
        "supportsNormalization": BOOLEAN, "license": STRING, "documentationUrl": URL, "connectorSubtype": STRING,
        "allowedHosts": OBJECT, "normalizationConfig": OBJECT, "suggestedStreams": OBJECT, "resourceRequirements": OBJECT,
    },
    required=("enabled",),
)

TEST_SUITE = _closed(
    {"suite": {"enum": ["unitTests", "integrationTests", "acceptanceTests", "liveTests"]}, "testSecrets": {"type": "array"},
     "testConnections": {"type": "array"}},
    required=("suite",),
)

DATA = _closed(
    {
        "name": STRING, "icon": STRING, "definitionId": UUID,
        "connectorBuildOptions": _closed({"baseImage": STRING}),
        "connectorTestSuitesOptions": {"type": "array", "items": TEST_SUITE},
        "connectorType": {"enum": ["destination", "source"]},
        "dockerRepository": STRING, "dockerImageTag": STRING, "supportsDbt": BOOLEAN, "supportsNormalization": BOOLEAN,
        "license": STRING, "documentationUrl": URL, "githubIssueLabel": STRING, "maxSecondsBetweenMessages": {"type": "integer"},
        "releaseDate": DATE, "protocolVersion": STRING, "erdUrl": STRING,
        "connectorSubtype": {"enum": ["api", "database", "datalake", "file", "custom", "message_queue", "unknown", "vectorstore"]},
        "releaseStage": {"enum": ["alpha", "beta", "generally_available", "custom"]},
        "supportLevel": {"enum": ["community", "certified", "enterprise", "archived"]},
        "tags": {"type": "array", "items": STRING},
        "registryOverrides": _closed({"oss": REGISTRY_OVERRIDE, "cloud": REGISTRY_OVERRIDE}),
        "allowedHosts": {"type": "object", "properties": {"hosts": {"type": "array", "items": STRING}}},
        "releases": _closed(
            {
                "rolloutConfiguration": OBJECT,
                "breakingChanges": {"type": "object", "minProperties": 1, "additionalProperties": False,
                                    "patternProperties": {r"^\d+\.\d+\.\d+$": BREAKING_CHANGE}},
                "migrationDocumentationUrl": URL,
            }
        ),
        "normalizationConfig": OBJECT, "suggestedStreams": OBJECT, "resourceRequirements": OBJECT,
        "ab_internal": {"type": "object", "properties": {"sl": {"enum": [0, 100, 200, 300]}, "ql": {"enum": [0, 100, 200, 300, 400, 500, 600]}}},
        "remoteRegistries": OBJECT, "supportsRefreshes": BOOLEAN, "generated": OBJECT, "supportsFileTransfer": BOOLEAN,
    },
    required=("name", "definitionId", "connectorType", "dockerRepository", "dockerImageTag", "license", "documentationUrl",
              "githubIssueLabel", "connectorSubtype", "releaseStage"),
)

METADATA_SCHEMA = _closed({"metadataSpecVersion": STRING, "data": DATA}, required=("metadataSpecVersion", "data"))
