"""Run one participant for one account: ``python scripts/run_client.py --network anvil --account I``.

Thin entry point for ``python -m fl_client client ...``; start one process per account.
"""

import sys

from fl_client.cli import main

if __name__ == "__main__":
    sys.exit(main(["client", *sys.argv[1:]]))
