"""The pytest layer: settings, ignore rules, policy, baseline, the verdict, the summary,
pool health and the socket check. It reaches clients only through the core's registry.
"""
