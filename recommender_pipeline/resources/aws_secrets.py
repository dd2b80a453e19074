"""AWS Secrets Manager (boto3): the original tool's JSON secrets for Cloud and Kafka API keys."""

import json

import dagster as dg
from pydantic import PrivateAttr

from recommender_pipeline.errors import CredentialsError
from recommender_pipeline.resources.settings import SettingsResource


class AwsSecretsResource(dg.ConfigurableResource):
    """Reads JSON secrets by `{"region_name", "secret_name"}` paths; values stay in memory.

    `AWS_SECRETS_MANAGER_ENDPOINT_URL` points boto3 at another endpoint (a test server);
    AWS credentials come from boto3's usual chain.
    """

    config: dg.ResourceDependency[SettingsResource]
    _cache: dict = PrivateAttr(default_factory=dict)

    def get_json(self, path: dict, variable: str) -> dict:
        region, name = path.get("region_name"), path.get("secret_name")
        if not region or not name:
            raise CredentialsError(f"{variable}: each entry needs region_name and secret_name (got {sorted(path)})")
        if (region, name) not in self._cache:
            # Imported here: boto3 takes half a second to import, and only this path needs it.
            import boto3
            from botocore.exceptions import BotoCoreError, ClientError

            client = boto3.client(
                "secretsmanager",
                region_name=region,
                endpoint_url=self.config.settings.aws_secrets_manager_endpoint_url,
            )
            try:
                text = client.get_secret_value(SecretId=name)["SecretString"]
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "error")
                raise CredentialsError(f"secret {name!r} ({region}, from {variable}): {code}") from None
            except BotoCoreError as error:
                raise CredentialsError(f"secret {name!r} ({region}, from {variable}): {type(error).__name__}") from None
            try:
                value = json.loads(text)
            except ValueError:
                raise CredentialsError(f"secret {name!r} ({region}, from {variable}) is not a JSON object") from None
            if not isinstance(value, dict):
                raise CredentialsError(f"secret {name!r} ({region}, from {variable}) is not a JSON object")
            self._cache[(region, name)] = value
        return self._cache[(region, name)]
