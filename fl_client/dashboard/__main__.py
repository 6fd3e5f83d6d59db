"""``python -m fl_client.dashboard``: the dashboard alone (``python -m fl_client dashboard``
once the project's command line includes it)."""

import sys

from fl_client.dashboard.cli import main

if __name__ == "__main__":
    sys.exit(main())
