"""What the status page shows, read from the stores without asking Salesforce (no login, no I/O
beyond the token stores and the audit report folder)."""
