"""A lean DNS wire reader (RFC 1035 §4.1): the A, AAAA and CNAME answers of a response, for name
evidence (auditor/names.py).

Name evidence needs three record types of one section. dpkt's object model built every question and
record of every section (and refused record types it does not know, such as RRSIG or HTTPS); this
reader walks the header, the question and the answer section and nothing else.

Pure functions over bytes, kept to what mypyc compiles well: an install with a C compiler builds this
module native with the per-packet kernel (setup.py), and auditor/capture/native.py chooses which runs;
this module is the reference, always installed. The constants below are read when used (tests break
them on purpose).
"""

from __future__ import annotations

from auditor.addrtext import addr_str, ipv4_at

A, CNAME, AAAA = 1, 5, 28
"""The record types read."""
_MAX_NAME_OCTETS = 255
"""RFC 1035 §3.1: the length octets and labels of a name (dpkt's count, without the root's zero)."""
_MAX_POINTER_HOPS = 127
"""Compression pointers followed for one name: a 255-octet name has at most 127 labels, and a
pointer must lead to at least one of them. Pointers only go backwards (dpkt's rule: before the start
of the name or of the part a pointer led to), so they cannot loop; this bounds the walk besides."""


class MalformedDNS(Exception):
    """The message breaks RFC 1035 §4.1 where this reader looks: counted as a parse error."""


_NameCache = dict[int, tuple[str, int, int, int]]
"""Per message: offset -> (text, octets, pointer hops, offset after the name read from there)."""


def _read_name(msg: bytes, off: int, cache: _NameCache, depth: int = 0) -> tuple[str, int, int, int]:
    """The (possibly compressed, RFC 1035 §4.1.4) name at ``off``: (text, octets, pointer hops, the
    offset after it). ``depth``: pointers followed to get here.

    Labels are joined by dots. Their octets are decoded as UTF-8 where they are UTF-8 (as dpkt
    decoded them); other octets become lone surrogates, which ``_clean`` refuses (dpkt refused the
    whole message). A dot or backslash inside a label is escaped as dig prints it (RFC 1035 §5.1),
    so the one label ``a.b`` reads ``a\\.b``, not the two labels ``a.b`` (dpkt joined them alike).

    Answers point at the question's name, so names are cached by where they start: the owner of a
    typical answer costs a dictionary lookup."""
    got = cache.get(off)
    if got is not None:
        if depth + got[2] > _MAX_POINTER_HOPS:
            raise MalformedDNS("too many compression pointers")
        return got
    first = off
    size = len(msg)
    labels: list[bytes] = []
    octets = 0
    while True:
        if off >= size:
            raise MalformedDNS("name runs past the message")
        n = msg[off]
        if n == 0:
            off += 1
            suffix = ""
            hops = 0
            break
        if n >= 0xC0:
            if off + 1 >= size:
                raise MalformedDNS("compression pointer cut")
            ptr = ((n & 0x3F) << 8) | msg[off + 1]
            if ptr >= first:
                raise MalformedDNS("compression pointer does not point backwards")
            if depth >= _MAX_POINTER_HOPS:
                raise MalformedDNS("too many compression pointers")
            off += 2
            suffix, more, hops, _ = _read_name(msg, ptr, cache, depth + 1)
            octets += more
            hops += 1
            break
        if n >= 0x40:
            raise MalformedDNS(f"label type {n >> 6:#x}")
        octets += n + 1
        if octets > _MAX_NAME_OCTETS:
            raise MalformedDNS("name longer than 255 octets")
        labels.append(msg[off + 1:off + 1 + n])
        off += 1 + n
    if octets > _MAX_NAME_OCTETS:
        raise MalformedDNS("name longer than 255 octets")
    if labels:
        raw = b".".join(labels)
        if raw.count(b".") != len(labels) - 1 or b"\\" in raw:
            raw = b".".join([label.replace(b"\\", b"\\\\").replace(b".", b"\\.") for label in labels])
        text = raw.decode("utf-8", "surrogateescape")
        if suffix:
            text = text + "." + suffix
    else:
        text = suffix
    result = (text, octets, hops, off)
    cache[first] = result
    return result


def read_answers(msg: bytes) -> tuple[list[tuple[int, str, str]], bool]:
    """The A, AAAA and CNAME answers of a DNS response: ([(type, owner, address or CNAME target)],
    whether an A or AAAA record was the wrong size). Raises MalformedDNS.

    The header and question section are read (the answers' names point into them) and the answer
    section walked record by record (RFC 1035 §4.1.3); other record types are skipped by their
    RDLENGTH, and the authority and additional sections are not read. A CNAME's target is read where
    its RDATA starts (as dpkt did, not checked against RDLENGTH). An A or AAAA record whose RDATA is
    not exactly 4 or 16 octets is not tied and flagged; if it was cut by the end of the message, a
    record after it fails to read and the message with it."""
    size = len(msg)
    if size < 12:
        raise MalformedDNS("header cut")
    qdcount = (msg[4] << 8) | msg[5]
    ancount = (msg[6] << 8) | msg[7]
    cache: _NameCache = {}
    off = 12
    for _ in range(qdcount):
        off = _read_name(msg, off, cache)[3] + 4  # QTYPE, QCLASS
        if off > size:
            raise MalformedDNS("question cut")
    answers: list[tuple[int, str, str]] = []
    short = False
    for _ in range(ancount):
        # Most owners are a pointer to a name read already (the question's): a cache lookup.
        got = cache.get(((msg[off] & 0x3F) << 8) | msg[off + 1]) if off + 1 < size and msg[off] >= 0xC0 else None
        if got is not None and got[2] < _MAX_POINTER_HOPS and ((msg[off] & 0x3F) << 8) | msg[off + 1] < off:
            owner = got[0]
            off += 2
        else:
            owner, _octets, _hops, off = _read_name(msg, off, cache)
        if off + 10 > size:
            raise MalformedDNS("record header cut")
        rtype = (msg[off] << 8) | msg[off + 1]
        rdlength = (msg[off + 8] << 8) | msg[off + 9]
        off += 10
        if rtype in (A, AAAA):
            want = 4 if rtype == A else 16
            if rdlength == want and off + want <= size:
                answers.append((rtype, owner, ipv4_at(msg, off) if want == 4 else addr_str(msg[off:off + want])))
            else:
                short = True
        elif rtype == CNAME:
            answers.append((rtype, owner, _read_name(msg, off, cache)[0]))
        off += rdlength
    return answers, short
