"""One address-text cache for every output: the texts address_text gives, in bounded memory."""

from __future__ import annotations

import ipaddress

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from traffic_capture.addresses import AddressText, address_text, split_address

ADDRESSES = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


def columns(addresses: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    halves = [split_address(address.packed) for address in addresses]
    return (np.array([address.version == 6 for address in addresses], dtype=bool),
            np.array([hi for hi, _ in halves], dtype=np.uint64),
            np.array([lo for _, lo in halves], dtype=np.uint64))


@given(st.lists(ADDRESSES, min_size=1, max_size=40), st.integers(1, 8))
def test_the_texts_are_address_text_s_and_the_memory_stays_bounded(addresses: list,
                                                                   limit: int) -> None:
    text = AddressText(limit=limit)
    for _ in range(2):  # the second time from memory, where it was kept
        assert text(*columns(addresses)) == [address_text(address.packed) for address in addresses]
        assert len(text) <= limit + 1


def test_an_ipv4_and_an_ipv6_address_with_the_same_low_half_keep_their_own_texts() -> None:
    both = [ipaddress.ip_address("0.0.0.5"), ipaddress.ip_address("::5")]
    assert AddressText()(*columns(both)) == ["0.0.0.5", "::5"]
