"""Deploy a coordinator to ``--network`` and write its deployment record.

Thin entry point: ``python scripts/deploy.py --network anvil`` is ``python -m fl_client deploy ...``.
"""

import sys

from fl_client.cli import main

if __name__ == "__main__":
    sys.exit(main(["deploy", *sys.argv[1:]]))
