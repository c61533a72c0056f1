"""A stateful Salesforce org emulator (OAuth token/introspect/revoke/userinfo/identity,
OpenID discovery, SOQL query) on loopback, for tests and demos.

Never imports ``airflow``; usable from any Python program::

    from sf_oauth_provider.emulator import serve
    with serve() as emu:
        print(emu.base_url, emu.org.demo.jwt_consumer_key)
"""

from __future__ import annotations

from .seed import seed_demo_org
from .server import RunningEmulator, serve, start
from .state import Org, Settings

__all__ = ["Org", "RunningEmulator", "Settings", "seed_demo_org", "serve", "start"]
