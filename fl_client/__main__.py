"""``python -m fl_client``: the command line."""

from fl_client.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
