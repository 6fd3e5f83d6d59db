"""A live dashboard of one deployment: rounds, the model and the money, drawn from the chain alone.

``python -m fl_client dashboard --network NAME`` serves one page on 127.0.0.1. Its data come from
the coordinator's events (``eth_getLogs`` from the block that created it, then incrementally), the
calldata of the transactions that made each model, and the contract's free calls; nothing is
stored, so a restarted dashboard shows the same history.

- ``ledger``: the events as a history of rounds, submissions, payments and gas (pure);
- ``models``: every global model rebuilt from the closes' calldata, checked against its hash (pure);
- ``fl_client.evaluation`` (shared with ``query``): a model's test accuracy;
- ``history``: the three together, and the page's data (pure but for the evaluation);
- ``tracker``: reads the chain on each poll, and reports a node that does not answer;
- ``server``: the aiohttp service (page, Chart.js from node_modules, JSON, Server-Sent Events);
- ``cli``: the command.
"""
