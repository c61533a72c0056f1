"""Report output shared by the audit operator and the example DAGs.

* :mod:`~sf_oauth_provider.reporting.cells` — values from Salesforce made safe for the reader:
  CSV cells that a spreadsheet would run as a formula are neutralised, Markdown is escaped, plain
  text lines get no control characters and no live links.
* :mod:`~sf_oauth_provider.reporting.location` — where report files go: a local folder (written
  through ``O_EXCL``/``O_NOFOLLOW`` temp files and atomic renames, modes following the umask but
  never group/other-writable, refusing a folder other users can write) or any
  ``ObjectStoragePath`` URI (``s3://``, ``gs://``, …).
"""

from __future__ import annotations

from sf_oauth_provider.reporting.cells import csv_cell, csv_text, md_cell, text_cell
from sf_oauth_provider.reporting.location import ReportFolder, ReportLocationError

__all__ = ["ReportFolder", "ReportLocationError", "csv_cell", "csv_text", "md_cell", "text_cell"]
