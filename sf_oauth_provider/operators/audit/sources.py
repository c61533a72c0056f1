"""Where the audit's records come from: the OauthToken inventory, raw tokens, and connections —
and introspecting them all on one connection pool.

Secrets (DeleteTokens, raw tokens, connection secrets) stay in :class:`Collector`; what leaves it
are :class:`~.findings.TokenRecord` objects and failures whose messages are redacted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sf_oauth_provider.client.certificate import load_certificate
from sf_oauth_provider.client.errors import SalesforceAuthError, SalesforceConfigError, SalesforceOAuthError
from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
from sf_oauth_provider.masking import mask_secrets, redact_secrets
from sf_oauth_provider.operators._common import Progress, bounded_map
from sf_oauth_provider.operators.audit.findings import TokenRecord
from sf_oauth_provider.operators.inventory import query_inventory

if TYPE_CHECKING:
    from sf_oauth_provider.client.oauth import RetryPolicy
    from sf_oauth_provider.client.token import IntrospectionResult

__all__ = ["Collector", "Job", "certificate_status"]


@dataclass
class Job:
    """One introspection to make; ``secret`` never leaves the collector (not in ``repr``)."""

    record: TokenRecord
    secret: str = field(repr=False)
    hint: str


def apply_introspection(record: TokenRecord, result: IntrospectionResult) -> None:
    """Copy what introspection says into ``record``."""
    record.active = bool(result.active)
    if not result.active:
        return
    record.scope = result.scope or record.scope
    record.client_id = result.client_id or record.client_id
    record.user = record.user or result.username
    if result.exp:
        record.expires_at = datetime.fromtimestamp(result.exp, timezone.utc)


def certificate_status(config: Any, now: datetime) -> dict[str, Any] | None:
    """Expiry and key match of the connection's ``jwt_certificate`` (``None`` when it has none).

    :param config: the connection's ``OAuthConfig``
    :param now: the audit's time
    """
    value = getattr(config, "jwt_certificate", None)
    if not value:
        return None
    info = load_certificate(value, conn_id=config.conn_id).status(config.private_key, now)
    return info


class Collector:
    """Gathers the records of one audit and the secrets needed to introspect them.

    :param hook: the auditing connection's hook
    :param log: the operator's logger
    :param max_concurrency: introspections in flight
    """

    def __init__(self, hook: SalesforceOAuthHook, log: logging.Logger | Any, max_concurrency: int) -> None:
        self.hook = hook
        self.log = log
        self.max_concurrency = max_concurrency
        self.records: list[TokenRecord] = []
        self.jobs: list[Job] = []
        self.failed: list[dict[str, Any]] = []
        self.secrets: set[str] = set()  # what error messages must never repeat

    def redact(self, message: str) -> str:
        """``message`` without any secret this audit knows or anything token-like."""
        return redact_secrets(message, self.secrets)

    def _fail(self, source: str, message: str, *, transient: bool, **fields: Any) -> None:
        entry = {"source": source, "fingerprint": None, "conn_id": None, "error": self.redact(message),
                 "transient": transient}
        entry.update(fields)
        self.failed.append(entry)

    # ---- sources --------------------------------------------------------------------------------
    def add_inventory(self, introspect: bool) -> None:
        """Every OauthToken row the connection's user can see."""
        rows = query_inventory(self.hook)
        self.log.info("Read %s OauthToken rows", f"{len(rows):,}")
        for row in rows:
            self.secrets.add(row.delete_token)
            record = TokenRecord(
                source="inventory", fingerprint=row.fingerprint, app=row.app, user=row.username, user_id=row.user_id,
                user_active=row.user_active, created=row.created, last_used=row.last_used, use_count=row.use_count,
            )
            self.records.append(record)
            if introspect:
                self.jobs.append(Job(record, row.delete_token, "refresh_token"))

    def add_raw_tokens(self, tokens: list[str]) -> None:
        """Raw tokens to introspect (masked before anything else happens)."""
        mask_secrets(tokens)
        self.secrets.update(tokens)
        for token in tokens:
            record = TokenRecord(source="token", fingerprint=fingerprint(token))
            self.records.append(record)
            self.jobs.append(Job(record, token, "access_token"))

    def add_connection(self, conn_id: str, retry: RetryPolicy | None, now: datetime) -> None:
        """Can the connection authenticate; its token, key, certificate and introspection."""
        record = TokenRecord(source="connection", conn_id=conn_id)
        self.records.append(record)
        hook = SalesforceOAuthHook(conn_id, retry=retry)
        try:
            config = hook.config
        except SalesforceOAuthError as exc:
            record.auth_error = self.redact(str(exc))
            return
        except Exception as exc:  # e.g. the connection does not exist
            record.auth_error = f"Connection {conn_id!r} cannot be read ({type(exc).__name__})"
            return
        self.secrets.update(s for s in config.secrets if s)
        record.auth_flow, record.client_id, record.user = config.auth_flow, config.consumer_key, config.username
        if config.private_key is not None:
            record.key_bits = int(config.private_key.key_size)
        try:
            record.certificate = certificate_status(config, now)
        except SalesforceOAuthError as exc:
            record.auth_error = self.redact(str(exc))
            return
        try:
            self._probe(hook, record)
        finally:
            hook.close()

    def _probe(self, hook: SalesforceOAuthHook, record: TokenRecord) -> None:
        config, conn_id = hook.config, hook.salesforce_oauth_conn_id
        try:
            # a real exchange (a cached token would hide a broken key), through the token provider
            # like every token request: with rotation on, a refresh outside it would send a
            # refresh token a task already rotated away, and Salesforce would revoke the live one
            token = hook.get_token(force_refresh=True)
        except SalesforceOAuthError as exc:
            if exc.transient:
                self.log.warning("Connection %r: could not get a token (%s)", conn_id, exc)
                self._fail("connection", str(exc), transient=True, conn_id=conn_id)
            else:
                self.log.warning("Connection %r cannot authenticate: %s", conn_id, exc)
                record.auth_error = self.redact(str(exc))
            return
        self.secrets.add(token.access_token)
        record.fingerprint, record.scope = token.fingerprint, token.scope
        record.expires_at = datetime.fromtimestamp(token.expires_at, timezone.utc)
        if config.consumer_secret:
            try:
                apply_introspection(record, hook.introspect(token.access_token))
            except SalesforceOAuthError as exc:
                self._fail("connection", str(exc), transient=exc.transient, conn_id=conn_id,
                           fingerprint=token.fingerprint)
        self.log.info("Connection %r authenticates (%s, token %s)", conn_id, config.auth_flow, token.fingerprint)

    # ---- introspection --------------------------------------------------------------------------
    def introspect_all(self) -> None:
        """Introspect every job on one connection pool; failures go to :attr:`failed`."""
        jobs = self.jobs
        if not jobs:
            return
        mask_secrets(job.secret for job in jobs)
        hook = self.hook
        _ = hook.config  # read the connection here, not on the event loop
        progress = Progress(self.log, len(jobs), "introspected")
        abort: list[str] = []  # a refused client makes every further call fail the same way
        self.log.info("Introspecting %s tokens, %d at a time", f"{len(jobs):,}", self.max_concurrency)

        async def run() -> list[tuple[Job, str, bool] | None]:
            async with hook.async_client(max_connections=self.max_concurrency) as client:

                async def one(job: Job) -> tuple[Job, str, bool] | None:
                    if abort:
                        return job, f"not introspected: {abort[0]}", False
                    try:
                        result = await client.introspect(job.secret, job.hint)
                    except SalesforceOAuthError as exc:
                        if isinstance(exc, (SalesforceAuthError, SalesforceConfigError)) and not abort:
                            abort.append(str(exc))
                        return job, str(exc), exc.transient
                    apply_introspection(job.record, result)
                    return None

                return await bounded_map(jobs, one, self.max_concurrency, progress)

        outcomes = asyncio.run(run())
        failures = [o for o in outcomes if o is not None]
        for job, message, transient in failures:
            r = job.record
            self._fail(r.source, message, transient=transient, fingerprint=r.fingerprint, app=r.app, user=r.user,
                       introspection=True)
        if failures:
            self.log.warning("%d of %d introspections failed; they are listed in the report", len(failures), len(jobs))
