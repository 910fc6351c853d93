"""logtransfer: consumes logferry topics and bulk-indexes them into Elasticsearch."""
