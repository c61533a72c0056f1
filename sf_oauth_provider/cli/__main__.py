"""``python -m sf_oauth_provider.cli``: the ``sf-oauth`` console script."""

import sys

from sf_oauth_provider.cli import main

sys.exit(main())
