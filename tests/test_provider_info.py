"""Provider registration: Airflow discovers the package and the UI gets the connection form."""

from __future__ import annotations

import importlib

from sf_oauth_provider.get_provider_info import get_provider_info
from tests.airflow_compat import airflow_release


def _class_paths(info: dict) -> list[str]:
    paths = [c["hook-class-name"] for c in info["connection-types"]]
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            paths += entry["python-modules"]
    return paths


def test_providers_manager_loads_the_entry_point_and_every_listed_path_imports():
    from airflow.providers_manager import ProvidersManager

    from tests.airflow_compat import provider_hooks

    provider = ProvidersManager().providers["sf-oauth-provider"]
    assert provider.data["package-name"] == "sf-oauth-provider"
    hook_info = provider_hooks()["salesforce_oauth"]
    assert hook_info.hook_class_name == "sf_oauth_provider.hooks.salesforce_oauth.SalesforceOAuthHook"
    for path in _class_paths(provider.data):
        module, _, name = path.rpartition(".")
        try:
            importlib.import_module(path)  # a module path
        except ModuleNotFoundError:
            assert getattr(importlib.import_module(module), name)  # a class path


def test_connection_form_metadata_as_the_ui_reads_it():
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "salesforce_oauth"]
    assert meta.hook_name == "Salesforce OAuth"
    if airflow_release() < (3, 2):
        # 3.0 and 3.1 build the form only from hook classmethods (and extra widgets only with
        # wtforms/flask_appbuilder); the provider-info form metadata is read from 3.2 on. There the
        # form is the generic one: the connection's extras go into the Extra JSON field.
        assert not meta.extra_fields and meta.standard_fields is None
        return
    standard = meta.standard_fields
    assert standard.host.title == "Login URL or My Domain"
    assert standard.login.title == "Consumer Key"
    assert standard.password.title == "Consumer Secret"
    assert standard.port.hidden and standard.url_schema.hidden
    extra = meta.extra_fields
    expected = {"auth_flow", "username", "private_key", "jwt_key_file", "private_key_passphrase", "audience",
                "refresh_token", "api_version", "session_timeout", "cache", "timeout"}
    assert expected <= set(extra)
    assert extra["auth_flow"]["schema"]["enum"] == ["jwt_bearer", "client_credentials", "refresh_token"]
    assert extra["auth_flow"]["value"] == "jwt_bearer"  # a default keeps the form's Save button usable
    assert extra["private_key"]["schema"]["format"] == "multiline"
    assert extra["private_key_passphrase"]["schema"]["format"] == "password"
    assert extra["refresh_token"]["schema"]["format"] == "password"
    for name, field in extra.items():
        if name in expected:
            assert field["schema"]["title"] and field["description"] and field["schema"]["type"], name


def test_provider_info_is_self_consistent():
    info = get_provider_info()
    assert info["package-name"] == "sf-oauth-provider"
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "salesforce_oauth"
    assert set(conn["ui-field-behaviour"]["hidden-fields"]) == {"schema", "port"}


def test_conn_fields_are_the_extras_the_config_reads():
    from sf_oauth_provider.client.config import CACHE_MODES, KNOWN_EXTRAS

    (conn,) = get_provider_info()["connection-types"]
    assert set(conn["conn-fields"]) == set(KNOWN_EXTRAS)
    assert conn["conn-fields"]["cache"]["schema"]["enum"] == list(CACHE_MODES)


def test_airflow_masker_leaves_non_secret_field_values_readable(tmp_path):
    """Airflow masks the value of every extra whose *name* looks sensitive (``token_cache``,
    ``private_key_path`` did): ``memory`` or a key file path turned into ``***`` in every log line."""
    from sf_oauth_provider._compat import mask_secret
    from tests.airflow_compat import redact

    (conn,) = get_provider_info()["connection-types"]
    key_file = str(tmp_path / "salesforce-jwt.pem")
    values = {"cache": "memory", "jwt_key_file": key_file, "api_version": "63.0", "auth_flow": "jwt_bearer"}
    mask_secret(dict(values))  # what Connection.extra_dejson does with a connection's extras
    line = f"cache={values['cache']} key={key_file}"
    assert redact(line) == line
    for name, field in conn["conn-fields"].items():
        if not field.get("sensitive"):
            assert redact(f"value-of-{name}-1234", name=name) == f"value-of-{name}-1234", name


def test_provider_info_matches_airflows_schema_and_registers_the_status_page_plugin():
    import json
    from pathlib import Path

    import airflow
    import jsonschema
    from airflow.providers_manager import ProvidersManager

    info = get_provider_info()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    assert info["plugins"] == [{"name": "sf_oauth", "plugin-class": "sf_oauth_provider.plugins.SalesforceOAuthPlugin"}]
    assert "audit_report_dir" in info["config"]["sf_oauth"]["options"]
    manager = ProvidersManager()
    manager.initialize_providers_plugins()
    ours = [p for p in manager.plugins if p.provider_name == "sf-oauth-provider"]
    assert [(p.name, p.plugin_class) for p in ours] == [("sf_oauth", "sf_oauth_provider.plugins.SalesforceOAuthPlugin")]
    module, _, name = ours[0].plugin_class.rpartition(".")
    plugin = getattr(importlib.import_module(module), name)
    assert [a["url_prefix"] for a in plugin.fastapi_apps] == ["/sf-oauth"]
