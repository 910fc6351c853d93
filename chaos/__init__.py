"""The chaos harness: the whole pipeline on the real stack under kill -9, restarts and rotations.

``python -m chaos run`` (``make chaos``) puts several logagents in network namespaces of their
own (one host IP each, on a bridge the stack is bound to), two logtransfers in one consumer
group, writes N numbered lines into rotating files while a fault schedule runs, drains, and
counts every line in Elasticsearch. See :mod:`chaos.harness` for what is measured and how.
"""
