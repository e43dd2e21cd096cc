"""Report renderers: the audit document in, a string out (only the CLI writes files)."""
