"""Citrix: ICA (the HDX session) and CGP (Session Reliability)."""

from __future__ import annotations

from auditor.app_signatures.common import Hit

# --- Citrix: ICA and CGP -----------------------------------------------------------------------------
# Neither is publicly specified and Wireshark has no dissector. What public descriptions give: Citrix
# CTX104147 explains CGP (Session Reliability, 2598) as the client tunnelling ICA inside CGP to the XTE
# service, which relays it to the ICA listener on 1494, but shows no bytes; the open-source nDPI Citrix
# detector matches, at the start of the first payload after the handshake (either direction), the
# 6-byte ICA detect string ('ICA' NUL after two marker bytes, 7F 7F as SPEC §6 and Citrix troubleshooting
# notes give them) and the 7-byte 1A 'CGP/01'. That the ICA server speaks first is SPEC §6's statement;
# that the client echoes the detect string, or that the CGP server answers with its own CGP/01 header,
# no public description we found confirms. So either direction's bytes are evidence, and neither
# signature needs the other direction.

def _ica(p: bytes) -> Hit | None:
    return ("ica", "ICA detect string") if p.startswith(b"\x7f\x7fICA\x00") else None


def _cgp(p: bytes) -> Hit | None:
    return ("cgp", "CGP/01 header") if p.startswith(b"\x1aCGP/01") else None
