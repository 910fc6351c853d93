"""logctl: the operators' command line for logferry (``logctl --help``).

The terminal side only — arguments, text rendering, prompts. What it reads and writes (queries,
the fleet's views, etcd documents by compare-and-swap) is logferry's core, shared with the
console.
"""
