"""A client's handle on a relay over HTTP."""

from __future__ import annotations

import requests

from fl_client.chain import SignedUpdate
from fl_client.errors import RelayUnreachableError, UpdateRefusedError
from fl_client.relay.wire import to_json, words_from_hex


class RelayClient:
    """Hands signed updates to the relay at ``url`` and reads the words it carries."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def hand_over(self, update: SignedUpdate) -> None:
        """POST the update; raise :class:`UpdateRefusedError` with the relay's reason."""
        try:
            response = requests.post(
                f"{self.url}/updates", json=to_json(update), timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RelayUnreachableError(
                f"no relay answers at {self.url} ({type(exc).__name__})"
            ) from exc
        if response.status_code != 202:
            try:
                reason = str(response.json().get("error", response.text))
            except ValueError:
                reason = response.text
            raise UpdateRefusedError(
                f"the relay refused the update ({response.status_code}): {reason}"
            )

    def words(self, round_number: int, client: str) -> tuple[int, ...] | None:
        """The words of ``client``'s relayed update in ``round_number``, if the relay holds them."""
        try:
            response = requests.get(
                f"{self.url}/rounds/{round_number}/clients/{client}/words", timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout):
            return None
        if response.status_code != 200:
            return None
        return words_from_hex(str(response.json()["words"]))
