"""Federated learning with an Ethereum contract in place of the aggregation server.

The pure core (``codec``, ``aggregation``, ``data``, ``model``, ``training``, ``federated``) never
imports web3; ``chain`` is the one module that talks to the chain; ``client`` runs one participant;
``simulation`` runs many; ``cli`` is the command line (``python -m fl_client``).
"""

__version__ = "0.1.0"
