"""Capture sources: capture files, and live capture through one of two back ends.

Every source yields records `(timestamp_ns, linktype, frame)`; live sources also yield `None` when
they are idle (so windows can close by the wall clock). The Linux back end reads packet sockets
directly; the portable one goes through libpcap/Npcap via scapy and is the one Windows uses.
"""
