"""The main job: N clients x R rounds in one process (``python -m fl_client simulate ...``)."""

import sys

from fl_client.cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate", *sys.argv[1:]]))
