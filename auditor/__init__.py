"""pcap-audit: a passive traffic auditor for Citrix estates.

Where things live (one responsibility per module):
  model.py          shared data types (PacketRecord, Connection, Flow, FlowRule, ...)
  errors.py         the error classes the CLI turns into one line and exit status 2
  resources.py      where rules/ and reports/templates/ are (source tree or installed wheel)
  yamlsafe.py       YAML loading with line numbers and duplicate-key rejection
  catalog.py        rules/*.yaml -> Catalog of FlowRule, role vocabulary and aliases
  capture/          readers: files -> frames -> PacketRecord (dpkt and tshark engines)
  conversations.py  sans-IO core: PacketRecord stream -> connections and flows
  names.py          address-to-name evidence (DNS answers, TLS SNI, HTTP Host)
  roles.py          roles.yaml -> address/name -> roles resolver
  classify.py       flows x catalog x roles -> verdicts and rule status
  audit.py          the glue: inputs -> AuditResult
  report/           json, csv and html renderers (return str; only the CLI writes files)
  cli.py            click commands; the only module that prints, exits or opens output files
"""

__version__ = "0.1.0"
