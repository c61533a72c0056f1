"""Token stores: layers a :class:`~sf_oauth_provider.client.TokenProvider` looks tokens up in.

* :class:`MemoryStore` — this process (a dict lookup);
* :class:`FileStore` — every process of this user on the host (encrypted files, flock);
* a shared store for many hosts (Redis) plugs in as one more :class:`TokenStore`.

Every store implements :class:`TokenStore`: ``get`` / ``put`` / ``invalidate`` (the access token
only: the newest refresh token is kept) / ``lock``, each with an async twin.
"""

from sf_oauth_provider.client.stores.base import BlockingStore, TokenStore, has_access_token, refresh_only
from sf_oauth_provider.client.stores.file import FileStore
from sf_oauth_provider.client.stores.memory import MemoryStore, forget_process_memory
from sf_oauth_provider.client.stores.safefs import Rejected

__all__ = [
    "TokenStore",
    "BlockingStore",
    "MemoryStore",
    "FileStore",
    "Rejected",
    "forget_process_memory",
    "has_access_token",
    "refresh_only",
]
