"""The core: the lease ledger, lease sites, the adapter registry and patcher, origins.

It knows nothing of pytest and nothing of any particular client library.
"""
