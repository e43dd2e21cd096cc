"""pcap-audit: a passive traffic auditor for Citrix estates.

Where things live (one responsibility per module; docs/architecture.md draws the data path):
  model.py          shared data types (PacketRecord, Connection, FlowKey, Flow, FlowRule, ...)
  errors.py         the error classes the CLI turns into one line and exit status 2
  resources.py      where rules/ and reports/templates/ are (source tree or installed wheel)
  yamlsafe.py       YAML loading with line numbers and duplicate-key rejection
  catalog/          rules/ -> Catalog of FlowRule: layers (document, supplement/, site), role vocabulary,
                    feature-implied roles, features, alternative groups, the source document:
                    vocabulary.py (roles, features, Vocabulary), model.py (Catalog and its queries),
                    fields.py (field validation), load.py (load_catalog, validate_files), export.py
  capture/          readers: files -> frames -> PacketRecord (our dpkt-free fast path; tshark engine)
  apps.py           application protocol from a connection's first payload bytes: the vocabulary,
                    identify and identify_connection (both directions joined; AppEvidence is model.py's)
  app_signatures/   the signatures it dispatches to on the first byte: citrix.py (ICA, CGP), web.py (SSH,
                    TLS, DTLS, QUIC, HTTP), windows.py (RDP, SMB, DCE/RPC, LDAP, Kerberos, TDS),
                    infrastructure.py (DNS, NTP, SNMP, RADIUS, syslog, TFTP, DHCP), common.py,
                    dispatch.py (the tables by first byte)
  conversations/    sans-IO core: PacketRecord stream -> connections and flows (Zeek semantics):
                    builder.py (the table, feeding, closing, flows), tcp.py (history, state machine),
                    chunks.py (a chunk's head chains and the exact merge), state.py, results.py
  engine.py         the inputs as chunks on local processes or a Dask cluster, merged in order
  names.py          address-to-name evidence (DNS answers, TLS SNI, HTTP Host)
  roles/            roles.yaml -> RoleMap: most-specific lookup in O(log n), features, vantage: entries.py
                    (the entry types, name matching), lookup.py (RoleMap), parse.py (parse_roles, load_roles)
  roles_lint.py     roles.yaml warnings from what the capture showed (--strict-roles makes them errors)
  classify.py       flows x catalog x roles -> verdicts and rule status (features, alternatives, vantage)
  refusal.py        who refused a failing flow (RST TTLs against the responder's, ICMP senders and codes)
  criteria.py       --fail-on kinds and the PASS/FAIL result the document records
  suggest/          flows and names -> a roles.yaml draft with evidence and confidence (roles suggest):
                    model.py, evidence.py (gathering), grouping.py (CIDRs), draft.py, render.py,
                    scoring.py (precision and recall, for bench/bench_suggest.py)
  audit.py          the glue: collect (records -> conversations) and judge (-> verdicts); run_audit
  parallel.py       process helpers: gc settings, cores, the job count (one reading process for now)
  report/           document.py builds the audit document; tabular.py (JSON, CSV), html.py, parquet.py and
                    connlog.py (Zeek conn.log) render it; diff.py / diff_render.py compare two audits
  cli.py            click group; cli_audit.py, cli_catalog.py, cli_diff.py and cli_roles.py are its commands: the
                    only modules that print, exit or write output files (through cli_outputs.py: regular files
                    only, whole or not at all; cli_signals.py: SIGTERM and SIGHUP stop like Ctrl-C)
"""

__version__ = "0.1.0"
