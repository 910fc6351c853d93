"""logferry console: the web page where operators find and follow logs and manage what each host collects."""
