"""Query the round, the global model and rewards: ``python scripts/query.py --network anvil --all``.

Thin entry point for ``python -m fl_client query ...``.
"""

import sys

from fl_client.cli import main

if __name__ == "__main__":
    sys.exit(main(["query", *sys.argv[1:]]))
