"""The relay: carries clients' signed updates to the chain (gasless for the clients)."""

from fl_client.relay.client import RelayClient
from fl_client.relay.core import Relay

__all__ = ["Relay", "RelayClient"]
