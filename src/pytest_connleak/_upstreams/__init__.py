"""Mock upstreams that answer like real infrastructure: error pages, response shapes,
a real reverse proxy, and their fixtures. Independent of the checker.
"""
