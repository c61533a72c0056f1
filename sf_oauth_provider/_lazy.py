"""Package attributes loaded on first use (PEP 562 module ``__getattr__``), in the manner of
the Scientific Python ``lazy_loader`` (SPEC 1).

The DAG processor imports the hook, the operators and the sensor every time it parses a DAG
file, but the client's config and token classes, the audit's rules and reports, and the token
check run only when a task runs. So a package lists its submodules and public names once:

    __getattr__, __dir__ = attach(__name__, submodules=("oauth",), attributes={"OAuthConfig": "config"})

and code that needs them at run time reads them through the package, at the place of use
(``client.OAuthConfig``, ``client.oauth.RetryPolicy``, ``hooks.SalesforceOAuthHook``): a module
that imports the package pays for its ``__init__`` only, and no import hides inside a function.
``from package import name`` still works, and loads ``name`` at once.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, Iterable, Mapping

__all__ = ["attach"]


def attach(
    package: str, submodules: Iterable[str] = (), attributes: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose contents load on first use.

    :param package: the package's ``__name__``
    :param submodules: names of submodules, each imported when first read as an attribute
    :param attributes: public name → the submodule that defines it (imported when the name is
        first read; the value is then kept in the package)
    """
    subs = frozenset(submodules)
    homes = dict(attributes or {})

    def __getattr__(name: str) -> Any:
        if name in subs:
            return import_module(f"{package}.{name}")
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{home}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | subs | set(homes))

    return __getattr__, __dir__
