"""A service that leaked three connections to its upstream (the docs' `connleak watch` samples).

Usage: ``python service.py UPSTREAM_PORT``. It listens on a port of its own, as a service
does, takes three ``stream=True`` responses from the upstream and never reads or closes
them, says ``ready``, and runs until its standard input ends. Once the
upstream closes its side, the three sockets sit in CLOSE_WAIT.
"""

import socket
import sys

import requests

upstream = int(sys.argv[1])
api = socket.create_server(("127.0.0.1", 0))
session = requests.Session()
leaked = [session.get(f"http://127.0.0.1:{upstream}/report", stream=True) for _ in range(3)]
print("ready", flush=True)
sys.stdin.read()
