"""Rendering the draft as roles.yaml text (schema 2, ``roles:`` only), with its evidence as comments:
every piece of capture text in them passed through comment_text."""

from __future__ import annotations

from collections.abc import Sequence

from auditor.suggest.model import (
    CONFIDENCE_HELP,
    EVIDENCE_SHOWN,
    GROUP_LISTED,
    NAMES_SHOWN,
    Confidence,
    Draft,
    Entry,
    Evidence,
    comment_text,
)


def _frame_text(frame: tuple[int, int]) -> str:
    return f"frame {frame[1]}" if frame[0] == 0 else f"input {frame[0] + 1} frame {frame[1]}"


def _entry_line(e: Entry) -> str:
    text = f'"{e.text}"' if ":" in e.text else e.text
    seen: dict[str, list[Evidence]] = {}
    for ev in e.evidence:  # strongest and earliest first: the first of each text is the one shown
        seen.setdefault(ev.text, []).append(ev)
    reasons = []
    for why, same in list(seen.items())[:EVIDENCE_SHOWN]:
        where = [_frame_text(same[0].frame)] if same[0].frame[0] < 1 << 62 else []
        if len(same) > 1 and not e.members:  # a group's count is its members
            where.append(f"{len(same)} times")
        reasons.append(f"{why} [{', '.join(where)}]" if where else why)
    if len(seen) > EVIDENCE_SHOWN:
        reasons.append(f"{len(seen) - EVIDENCE_SHOWN} more")
    parts = [f"{e.confidence.label}: " + "; ".join(reasons)]
    if e.members:
        listed = ", ".join(e.members[:GROUP_LISTED]) + (" ..." if len(e.members) > GROUP_LISTED else "")
        parts.append(f"{len(e.members)} hosts ({listed})")
    if e.names:
        parts.append("name " + ", ".join(e.names[:NAMES_SHOWN])
                     + (f" and {len(e.names) - NAMES_SHOWN} more" if len(e.names) > NAMES_SHOWN else ""))
    return f"    - {text:<15}  # " + comment_text("; ".join(parts), 600)


def render(draft: Draft, sources: Sequence[str], version: str) -> str:
    """The draft as roles.yaml text (schema 2, `roles:` only), with its evidence as comments."""
    lines = [
        f"# roles.yaml drafted by pcap-audit {comment_text(version, 40)} roles suggest from:",
        *(f"#   {comment_text(s, 200)}" for s in sources),
        "# Every entry says why, from the capture, and how sure: review each one before you rely on the audit.",
        *(f"#   {level.label}: {why}" for level, why in sorted(CONFIDENCE_HELP.items(), reverse=True)),
        *([f"# Entries below {draft.min_confidence.label} confidence are left out ({draft.dropped} of them)."]
          if draft.min_confidence > Confidence.LOW else []),
        "# Roles the capture cannot show (Director, Citrix Gateway, FAS...) and hosts that were silent are",
        "# not here: add them by hand.",
    ]
    if not draft.entries:
        lines.append("roles: {}")
    else:
        lines.append("roles:")
        role = None
        for e in draft.entries:
            if e.role != role:
                role = e.role
                lines.append(f"  {role}:")
            lines.append(_entry_line(e))
    if draft.not_found:
        lines.append("# not found:")
        lines.extend(f"#   {role}: {why}" for role, why in draft.not_found)
    return "\n".join(lines) + "\n"
