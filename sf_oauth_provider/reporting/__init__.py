"""Report output shared by the audit operator and the example DAGs.

* :mod:`~sf_oauth_provider.reporting.cells` — values from Salesforce made safe for the reader:
  CSV cells that a spreadsheet would run as a formula are neutralised, Markdown is escaped, plain
  text lines get no control characters and no live links.
* :mod:`~sf_oauth_provider.reporting.location` — where report files go: a local folder (written
  through ``O_EXCL``/``O_NOFOLLOW`` temp files and atomic renames, modes following the umask but
  never group/other-writable, refusing a folder other users can write) or any
  ``ObjectStoragePath`` URI (``s3://``, ``gs://``, …).

Both load on first use (:mod:`sf_oauth_provider._lazy`): the audit operator's module, which DAG
files import, reads them as ``reporting.<name>`` when a task runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sf_oauth_provider._lazy import attach

if TYPE_CHECKING:
    from sf_oauth_provider.reporting import cells, location  # noqa: F401
    from sf_oauth_provider.reporting.cells import csv_cell, csv_text, md_cell, text_cell
    from sf_oauth_provider.reporting.location import ReportFolder, ReportLocationError

__all__ = ["ReportFolder", "ReportLocationError", "csv_cell", "csv_text", "md_cell", "text_cell"]

__getattr__, __dir__ = attach(
    __name__,
    submodules=("cells", "location"),
    attributes={
        "ReportFolder": "location", "ReportLocationError": "location",
        "csv_cell": "cells", "csv_text": "cells", "md_cell": "cells", "text_cell": "cells",
    },
)
