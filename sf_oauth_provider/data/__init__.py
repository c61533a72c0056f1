"""Data access over a connection's token, apart from the token client (DESIGN §1, §11).

* :mod:`sf_oauth_provider.data.rest` — REST API SOQL queries, page by page, following
  ``nextRecordsUrl`` only on the token's instance origin and stopping a server that loops.

Framework-free like :mod:`sf_oauth_provider.client`: no Airflow import on this path. The
requests go through a :class:`~sf_oauth_provider.client.oauth.SalesforceOAuthClient` (or its
async twin), so they share its deadlines, body caps, retries and secret redaction.
"""
